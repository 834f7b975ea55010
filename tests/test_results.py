"""The committed results are what the committed run folders say: each report.md's text is what `smartfed report`
writes from its run folders today (plots aside), and every table row of the README's results section is a row of a
committed report or of `experiments/overlap.py`'s table. A run folder committed without its report rerun
(`experiments/report.sh`), or a README number typed by hand, fails here."""

import subprocess
import sys
from pathlib import Path

import pytest

from smartfed.report.write import read_runs, report_text

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"


def report_runs() -> dict[Path, list[Path]]:
    """report.md -> its run folders (finished runs: those with a summary), chosen as experiments/report.sh does."""
    def finished(*folders: Path) -> list[Path]:
        return [summary.parent for folder in folders for summary in sorted(folder.glob("*/summary.json"), key=str)]

    reports = {}
    for composition in ("zh+math", "math+code", "zh+code"):
        reports[RESULTS / composition / "report"] = finished(RESULTS / composition,
                                                             *sorted(RESULTS.glob(f"{composition}-pool-*")))
        reports[RESULTS / f"{composition}-data-fraction" / "report-data-fraction"] = finished(RESULTS / f"{composition}-data-fraction")
    for folder in sorted(RESULTS.glob("*-matched-rebuild")):
        reports[folder / "report"] = finished(folder)
    return {report / "report.md": runs for report, runs in reports.items() if runs}


def _without_plots(text: str) -> list[str]:
    return "\n".join(line for line in text.splitlines() if not line.startswith("![")).rstrip().splitlines()


@pytest.mark.parametrize("report", sorted(report_runs()), ids=lambda p: str(p.relative_to(RESULTS)))
def test_each_committed_report_is_what_its_run_folders_say(report):
    regenerated = report_text(read_runs(report_runs()[report]), plots=[])
    assert _without_plots(regenerated) == _without_plots(report.read_text()), f"rerun experiments/report.sh: {report}"


def test_every_results_table_row_in_the_readme_comes_from_a_committed_report():
    readme = (REPO / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(readme) if line.startswith("### SmartFed against the baselines"))
    end = next(i for i, line in enumerate(readme) if i > start and line.startswith("### "))
    rows = [line for line in readme[start:end] if line.startswith("|") and not line.startswith("|---")]
    overlap = subprocess.run([sys.executable, str(REPO / "experiments" / "overlap.py"), str(RESULTS / "math+code")],
                             capture_output=True, text=True, check=True).stdout
    sources = {line for report in report_runs() for line in report.read_text().splitlines()} | set(overlap.splitlines())
    assert len(rows) > 20  # the statistics, claims, EEQA and overlap tables
    assert [row for row in rows if row not in sources] == []
