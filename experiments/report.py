"""The reports behind the README's results, from the committed run folders (no run is started):

    docs/results/<composition>/report/                    the comparison and its coverage pools (<composition>-pool-*)
    docs/results/<composition>-data-fraction/report-data-fraction/
    docs/results/<composition>-matched-rebuild/report/    Arrow over a rebuild of the matched module (README)

    .venv/bin/python experiments/report.py    # about a minute on 2 cores; all.sh runs it at the end (report.sh)

Each report is `smartfed report` over its finished runs (those with a summary), in byte order of their paths;
tests/test_results.py checks the committed reports against the same selection.
"""

from pathlib import Path

from smartfed.report.write import write_report

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
    for folder in sorted(results.glob("*-matched-rebuild"), key=str):
        reports[folder / "report"] = finished(folder)
    return {report: runs for report, runs in reports.items() if runs}


def main() -> None:
    for report, runs in committed_reports().items():
        write_report(runs, report)
        print(f"report: {report.relative_to(REPO)}/report.md ({len(runs)} runs)")


if __name__ == "__main__":
    main()
