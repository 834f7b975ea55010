"""`smartfed run [CONFIG.toml] [--set key=value ...] | --resume runs/NAME`."""


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="run a federated experiment (no config: the embedded default)")
    p.add_argument("config", nargs="?", help="TOML config file (keys: `smartfed run --help-config`)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help="override one config key")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run after its last complete round")
    p.add_argument("--help-config", action="store_true", help="list every config key with its default")
    p.set_defaults(run=run)


def run(args) -> None:
    from dataclasses import fields

    from smartfed.fed.config import RunConfig, load_config
    from smartfed.fed.run_folder import RunFolder
    from smartfed.fed.federation import ROUND_HEADER
    from smartfed.fed.simulation import run_simulation

    if args.help_config:
        for f in fields(RunConfig):
            print(f"{f.name} = {f.default!r}  # {f.metadata['help']}")
        return
    if args.resume:
        config = load_config(str(RunFolder(args.resume).path / "config.toml"), args.overrides)
    else:
        config = load_config(args.config, args.overrides)
    print(f"run {config.run_dir}: {config.composition}, {config.num_clients} clients ({config.clients_per_round}/round), "
          f"{config.rounds} rounds, router {config.router} top-{config.top_k}")
    print(ROUND_HEADER)
    summary = run_simulation(config, resume=bool(args.resume))
    print(f"\nheld-out loss {summary['initial_heldout_loss']:.4f} -> {summary['final_heldout_loss']:.4f}; "
          f"sent {summary['cumulative_bytes_up'] / 1e6:.1f} MB up, {summary['cumulative_bytes_down'] / 1e6:.1f} MB down "
          f"(pool shipped once: {summary['pool_bytes_per_client_once'] / 1e6:.1f} MB per client); results in {config.run_dir}")
