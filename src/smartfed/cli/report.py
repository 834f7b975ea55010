"""`smartfed report RUN_DIR... [--out DIR]`."""

from pathlib import Path


def add_parser(sub) -> None:
    p = sub.add_parser("report", help="comparison table, ratios vs FedIT and PNG plots (loss per round, loss vs bytes, data fraction, EEQA quotas) over runs")
    p.add_argument("runs", nargs="+", help="run folders (runs/<name>)")
    p.add_argument("--out", default="report", help="folder for report.md and the PNGs")
    p.set_defaults(run=run)


def run(args) -> None:
    from smartfed.report.write import write_report

    print(write_report([Path(r) for r in args.runs], Path(args.out)))
