"""The reports behind the README's results, from the committed run folders (no run is started):

    docs/results/<composition>/report/                    the comparison and its coverage pools (<composition>-pool-*)
    docs/results/<composition>-data-fraction/report-data-fraction/
    docs/results/<composition>-matched-rebuild/report/    Arrow over a rebuild of the matched module (README)
    docs/results/<composition>-before-tuning/report/      runs at another composition's rates, before this one's tuning
    docs/results/overview.md                              every comparison's held-out loss against FedIT, one table

    .venv/bin/python experiments/report.py    # about a minute on 2 cores; all.sh runs it at the end (report.sh)

Each report is `smartfed report` over its finished runs (those with a summary), in byte order of their paths;
tests/test_results.py checks the committed reports against the same selection.
"""

from pathlib import Path

from smartfed.io import atomic_write_text
from smartfed.report.statistics import overview_table
from smartfed.report.write import read_runs, write_report

REPO = Path(__file__).resolve().parents[1]
COMPOSITIONS = ("zh+math", "math+code", "zh+code")


def committed_reports(results: Path = REPO / "docs" / "results") -> dict[Path, list[Path]]:
    """Report folder -> its finished run folders; a report with no finished run is left out."""
    def finished(*folders: Path) -> list[Path]:
        return [summary.parent for folder in folders for summary in sorted(folder.glob("*/summary.json"), key=str)]

    reports = {}
    for composition in COMPOSITIONS:
        reports[results / composition / "report"] = finished(results / composition, *sorted(results.glob(f"{composition}-pool-*"), key=str))
        reports[results / f"{composition}-data-fraction" / "report-data-fraction"] = finished(results / f"{composition}-data-fraction")
    for folder in sorted([*results.glob("*-matched-rebuild"), *results.glob("*-before-tuning")], key=str):
        reports[folder / "report"] = finished(folder)
    return {report: runs for report, runs in reports.items() if runs}


def overview(reports: dict[Path, list[Path]]) -> str:
    """overview.md: each composition's comparison (its default and coverage pools) against its FedIT on held-out loss."""
    comparisons = {report.parent.name: runs for report, runs in reports.items()
                   if report.name == "report" and report.parent.name in COMPOSITIONS}
    table = overview_table({composition: read_runs(runs) for composition, runs in comparisons.items()})
    return ("Every setting of each composition's comparison against that composition's FedIT on its 200 held-out items "
            "(mean over seeds and items with a 95% bootstrap interval, and the paired difference with FedIT on the seeds "
            "both ran; rows named `<folder>/<run>` are from a coverage pool). The benchmarks and the claims are in each "
            "composition's report.\n\n" + table + "\n")


def main() -> None:
    reports = committed_reports()
    for report, runs in reports.items():
        write_report(runs, report)
        print(f"report: {report.relative_to(REPO)}/report.md ({len(runs)} runs)")
    atomic_write_text(REPO / "docs" / "results" / "overview.md", overview(reports))
    print("overview: docs/results/overview.md")


if __name__ == "__main__":
    main()
