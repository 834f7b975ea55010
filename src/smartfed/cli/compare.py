"""`smartfed compare COMPOSITION [--quick] [--methods ...] [--fractions ...] [--seeds ...] [--tuning DIR] [--pending] [--no-report]`: every method, one report."""


def add_parser(sub) -> None:
    p = sub.add_parser("compare", help="run SmartFed and every baseline on one composition, then write the report")
    p.add_argument("composition", help="zh+math | zh+code | math+code (or any composition)")
    p.add_argument("--out", help="results folder (default runs/compare-<composition>)")
    p.add_argument("--methods", help="comma-separated method runs (default: all; `smartfed compare COMPOSITION --list` names them)")
    p.add_argument("--list", action="store_true", help="list the method runs and the config keys each sets, then stop")
    p.add_argument("--fractions", default="1", help="data fractions, comma-separated (a sweep: 0.1,0.25,1)")
    p.add_argument("--seeds", default="0", help="seeds, comma-separated (0,1,2: three runs of every method; the report gives intervals)")
    p.add_argument("--tuning", metavar="DIR", help="a `smartfed tune` folder: every method runs at the learning rate chosen "
                   "for it there (its tuning.json)")
    p.add_argument("--pending", action="store_true", help="list the run folders not finished yet (or to be rescored), "
                   "one a line, then stop: a script builds what they need only where one is pending")
    p.add_argument("--no-report", action="store_true", help="only the runs (sweeps split into jobs report once at the end)")
    p.add_argument("--quick", action="store_true", help="CI smoke scale: 2 rounds, 4 clients, 1 step, 2 items per suite")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config key for every run")
    p.set_defaults(run=run)


def run(args) -> None:
    from pathlib import Path

    from smartfed.compare import METHOD_RUNS, comparison_configs, pending_runs, run_comparison, tuned_rates
    from smartfed.errors import ConfigError
    from smartfed.fed.run_folder import SUMMARY
    from smartfed.report.write import write_report

    if args.list:
        print("\n".join(f"{name}: {keys}" for name, keys in METHOD_RUNS.items()))
        return
    out = Path(args.out or f"runs/compare-{args.composition}")
    try:
        fractions = [float(f) for f in args.fractions.split(",")]
    except ValueError as err:
        raise ConfigError(f"--fractions: expected comma-separated numbers in (0, 1], found {args.fractions!r}") from err
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError as err:
        raise ConfigError(f"--seeds: expected comma-separated ints, found {args.seeds!r}") from err
    methods = (args.methods or ",".join(METHOD_RUNS)).split(",")
    rates = tuned_rates(args.tuning, args.composition) if args.tuning else None
    configs = comparison_configs(args.composition, str(out), methods, fractions, args.quick, args.overrides, seeds, rates)
    if args.pending:
        for folder in pending_runs(configs):
            print(folder)
        return
    runs = run_comparison(configs)
    if args.no_report:
        return
    finished = [folder for folder in runs if (folder / SUMMARY).is_file()]  # the others: another process is writing them
    report_dir = out / ("report" if fractions == [1.0] else "report-data-fraction")  # a sweep may share the runs folder
    if finished:
        print(write_report(finished, report_dir))
        print(f"report: {report_dir / 'report.md'}")
    for folder in runs:
        if folder not in finished:
            print(f"not in the report: {folder} (another process is writing it; report again when it has finished)")
