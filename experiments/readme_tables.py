"""The README's results tables, copied from the files that make them: each table follows a marker line

    <!-- table: SOURCE[; SOURCE...] -->

where a SOURCE is a report or overview file under docs/results, or `experiments/overlap.py ARGS` (run; its
output is the source). The table is the SOURCEs' tables with the README table's header, in order, under one
header. So a table can only show rows its sources have, and a run committed with its report rerun moves the
README with it:

    .venv/bin/python experiments/readme_tables.py           # rewrite the marked tables (seconds; overlap ~1 min)
    .venv/bin/python experiments/readme_tables.py --check   # exit 1 and name each table that differs

experiments/report.sh runs it after the reports; tests/test_results.py checks it.
"""

import argparse
import shlex
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MARKER = "<!-- table: "


def _tables(lines: list[str]) -> list[list[str]]:
    """Every run of consecutive `|` lines."""
    tables: list[list[str]] = []
    previous = ""
    for line in lines:
        if line.startswith("|"):
            if not previous.startswith("|"):
                tables.append([])
            tables[-1].append(line)
        previous = line
    return tables


def source_lines(source: str, repo: Path = REPO) -> list[str]:
    """The text of one SOURCE: a file under docs/results, or what `experiments/overlap.py ARGS` prints."""
    words = shlex.split(source)
    if words[0] == "experiments/overlap.py":
        return subprocess.run([sys.executable, str(repo / words[0]), *(str(repo / w) for w in words[1:])],
                              capture_output=True, text=True, check=True).stdout.splitlines()
    path = (repo / source).resolve()
    if len(words) != 1 or not path.is_relative_to((repo / "docs" / "results").resolve()) or not path.is_file():
        raise ValueError(f"README table source {source!r}: expected a file under docs/results or experiments/overlap.py ARGS")
    return path.read_text(encoding="utf-8").splitlines()


def table_from(sources: list[str], header: str, repo: Path = REPO) -> list[str]:
    """The sources' tables whose header is `header`, in order, under one header and rule."""
    rows: list[str] = []
    for source in sources:
        found = [t for t in _tables(source_lines(source, repo)) if t[0] == header]
        if not found:
            raise ValueError(f"README table source {source!r}: expected a table with header {header!r}, found none")
        for table in found:
            rows += table[:2] if not rows else []
            rows += table[2:]
    return rows


def marked_tables(lines: list[str]) -> list[tuple[int, list[str], int, int]]:
    """(marker line, sources, first and past-last line of its table) for each marker; the table starts within
    two lines of the marker."""
    found = []
    for i, line in enumerate(lines):
        if line.startswith(MARKER):
            sources = [s.strip() for s in line[len(MARKER):].removesuffix("-->").split(";") if s.strip()]
            start = next((j for j in range(i + 1, min(i + 3, len(lines))) if lines[j].startswith("|")), None)
            if start is None:
                raise ValueError(f"README line {i + 1}: expected a table within two lines of the marker, found none")
            end = next((j for j in range(start, len(lines)) if not lines[j].startswith("|")), len(lines))
            if found and start < found[-1][3]:
                raise ValueError(f"README line {i + 1}: a second marker for the table of line {found[-1][0] + 1}")
            found.append((i, sources, start, end))
    return found


def refreshed(lines: list[str], repo: Path = REPO) -> tuple[list[str], list[str]]:
    """(the README with every marked table copied from its sources, the line numbers of the tables that changed)."""
    out, changed, done = [], [], 0
    for _, sources, start, end in marked_tables(lines):
        table = table_from(sources, lines[start], repo)
        out += lines[done:start] + table
        if table != lines[start:end]:
            changed.append(f"line {start + 1} (from {'; '.join(sources)})")
        done = end
    return out + lines[done:], changed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a marked table differs from its sources")
    args = parser.parse_args()
    readme = REPO / "README.md"
    text = readme.read_text(encoding="utf-8")
    lines, changed = refreshed(text.splitlines())
    if args.check:
        print("\n".join(f"differs from its sources: README {c}" for c in changed) or "every marked table is its sources'")
        sys.exit(1 if changed else 0)
    if changed:
        from smartfed.io import atomic_write_text

        atomic_write_text(readme, "\n".join(lines) + ("\n" if text.endswith("\n") else ""))
    print("\n".join(f"rewrote README {c}" for c in changed) or "README tables already match their sources")


if __name__ == "__main__":
    main()
