"""The `smartfed` command line."""

import argparse
import sys

from smartfed.cli import compare, evaluate, pool, report, run, sizes, tune
from smartfed.errors import SmartFedError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="smartfed", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    for command in (run, compare, tune, pool, evaluate, report, sizes):
        command.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except SmartFedError as err:
        print(f"smartfed: error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
