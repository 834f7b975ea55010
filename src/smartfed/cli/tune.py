"""`smartfed tune COMPOSITION [--quick] [--out DIR] [--set ...]`: choose settings on the dev split."""


def add_parser(sub) -> None:
    p = sub.add_parser("tune", help="choose every method's learning rate (and SmartFed's gate, router, init) on the dev split")
    p.add_argument("composition", help="zh+math | zh+code | math+code")
    p.add_argument("--out", help="tuning folder (default runs/tune-<composition>)")
    p.add_argument("--quick", action="store_true", help="CI smoke scale")
    p.add_argument("--status", action="store_true", help="only print the tables of the trials finished so far")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config key for every trial")
    p.set_defaults(run=run)


def run(args) -> None:
    from smartfed.tune import finished_trials, run_tuning, tuning_tables

    out = args.out or f"runs/tune-{args.composition}"
    if args.status:
        print(tuning_tables(finished_trials(out)))
        return
    print(tuning_tables(run_tuning(args.composition, out, args.quick, args.overrides)))
    print(f"record: {out}/tuning.json")
