"""The committed results are what the committed run folders say: each report.md's text is what `smartfed report`
writes from its run folders today (plots aside), and every table row of the README's results section is a row of a
committed report, of the overview across compositions or of `experiments/overlap.py`'s table. A run folder committed without its report rerun
(`experiments/report.sh`), or a README number typed by hand, fails here."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from smartfed.report.write import read_runs, report_text

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"
_spec = importlib.util.spec_from_file_location("experiments_report", REPO / "experiments" / "report.py")
experiments_report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(experiments_report)
REPORTS = experiments_report.committed_reports()  # report folder -> its run folders, as experiments/report.py writes them


def test_the_committed_reports_are_found():
    assert {p.relative_to(RESULTS).as_posix() for p in REPORTS} >= {"zh+math/report", "math+code/report", "zh+code/report",
                                                                    "zh+math-data-fraction/report-data-fraction"}


def _without_plots(text: str) -> list[str]:
    return "\n".join(line for line in text.splitlines() if not line.startswith("![")).rstrip().splitlines()


@pytest.mark.parametrize("report", sorted(REPORTS), ids=lambda p: p.relative_to(RESULTS).as_posix())
def test_each_committed_report_is_what_its_run_folders_say(report):
    regenerated = report_text(read_runs(REPORTS[report]), plots=[])
    assert _without_plots(regenerated) == _without_plots((report / "report.md").read_text()), f"rerun experiments/report.sh: {report}"


def test_the_overview_is_what_the_comparisons_say():
    assert experiments_report.overview(REPORTS) == (RESULTS / "overview.md").read_text(), "rerun experiments/report.sh"


def test_every_results_table_row_in_the_readme_comes_from_a_committed_report():
    readme = (REPO / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(readme) if line.startswith("### SmartFed against the baselines"))
    end = next(i for i, line in enumerate(readme) if i > start and line.startswith("### "))
    rows = [line for line in readme[start:end] if line.startswith("|") and not line.startswith("|---")]
    overlap = subprocess.run([sys.executable, str(REPO / "experiments" / "overlap.py"), str(RESULTS / "math+code")],
                             capture_output=True, text=True, check=True).stdout
    sources = {line for report in REPORTS for line in (report / "report.md").read_text().splitlines()} | set(overlap.splitlines())
    sources |= set((RESULTS / "overview.md").read_text().splitlines())
    assert len(rows) > 20  # the statistics, claims, EEQA and overlap tables
    assert [row for row in rows if row not in sources] == []
