"""`smartfed tune COMPOSITION [--quick] [--out DIR] [--routing-from DIR] [--set ...]`: choose settings on the dev split."""


def add_parser(sub) -> None:
    p = sub.add_parser("tune", help="choose every method's learning rate (and SmartFed's gate, router, init) on the dev split")
    p.add_argument("composition", help="zh+math | zh+code | math+code")
    p.add_argument("--out", help="tuning folder (default runs/tune-<composition>)")
    p.add_argument("--quick", action="store_true", help="CI smoke scale")
    p.add_argument("--routing-from", metavar="DIR", help="take SmartFed's routing from another composition's tuning folder "
                   "(no routing trials here: every method gets the same learning-rate trials)")
    p.add_argument("--status", action="store_true", help="only print the tables of the trials finished so far")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override a config key for every trial")
    p.set_defaults(run=run)


def run(args) -> None:
    from smartfed.tune import finished_trials, run_tuning, tuning_tables

    out = args.out or f"runs/tune-{args.composition}"
    if args.status:
        print(tuning_tables(finished_trials(out, args.routing_from)))
        return
    print(tuning_tables(run_tuning(args.composition, out, args.quick, args.overrides, routing_from=args.routing_from)))
    print(f"record: {out}/tuning.json")
