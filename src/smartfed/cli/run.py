"""`smartfed run [CONFIG.toml] [--set section.key=value ...] | --resume runs/NAME`."""


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="run a federated experiment (no config: the embedded default)")
    p.add_argument("config", nargs="?", help="TOML config file in sections (keys: `smartfed run --help-config`)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override one config key")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue a run after its last complete round")
    p.add_argument("--help-config", action="store_true", help="list every config key with its default")
    p.set_defaults(run=run)


def run(args) -> None:
    from smartfed.config import help_lines, load_config, parse_overrides
    from smartfed.errors import ConfigError
    from smartfed.fed.loop import ROUND_HEADER
    from smartfed.fed.run_folder import RESUMABLE_KEYS, RunFolder
    from smartfed.fed.simulation import run_simulation
    from smartfed.methods import get_method

    if args.help_config:
        print("\n".join(help_lines()))
        return
    if args.resume:
        changes = parse_overrides(args.overrides)
        fixed = sorted(k for k in changes if k not in RESUMABLE_KEYS)
        if fixed:
            raise ConfigError(f"--resume --set {fixed[0]}: a resumed run keeps the settings it was trained with; "
                              f"expected one of {', '.join(RESUMABLE_KEYS)}")
        config = RunFolder(args.resume).config().with_values(changes)  # the folder records them once its checkpoint loads
    else:
        config = load_config(args.config, args.overrides)
    fed = config.federation
    print(f"run {config.run_dir}: {config.data.composition}, {fed.num_clients} clients ({fed.clients_per_round}/round), "
          f"{fed.rounds} rounds, method {config.run.method} ({get_method(config.run.method).trains(config)})")
    print(ROUND_HEADER)
    summary = run_simulation(config, resume=bool(args.resume))
    items = f" (start on the first {config.eval.curve_examples} items, end on {config.eval.examples})" if config.eval.curve_examples else ""
    print(f"\nheld-out loss {summary.initial_heldout_loss:.4f} -> {summary.final_heldout_loss:.4f}{items}; "
          f"sent {summary.cumulative_bytes_up / 1e6:.1f} MB up, {summary.cumulative_bytes_down / 1e6:.1f} MB down "
          f"(pool shipped once: {summary.pool_bytes_per_client_once / 1e6:.1f} MB per client); results in {config.run_dir}")
