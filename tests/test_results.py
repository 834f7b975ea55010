"""The committed results are what the committed run folders say: each report.md's text is what `smartfed report`
writes from its run folders today (plots aside), and every table of the README's results section is copied from the
reports (or `experiments/overlap.py`'s table) its marker names. A run folder committed without its report rerun
(`experiments/report.sh`), or a README number typed by hand, fails here."""

import importlib.util
from pathlib import Path

import pytest

from smartfed.report.write import read_runs, report_text

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"
_spec = importlib.util.spec_from_file_location("experiments_report", REPO / "experiments" / "report.py")
experiments_report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(experiments_report)
REPORTS = experiments_report.committed_reports()  # report folder -> its run folders, as experiments/report.py writes them
_spec = importlib.util.spec_from_file_location("readme_tables", REPO / "experiments" / "readme_tables.py")
readme_tables = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(readme_tables)


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


def test_every_results_table_in_the_readme_is_copied_from_the_sources_its_marker_names():
    """Each table of the results section follows a `<!-- table: SOURCE -->` marker (experiments/readme_tables.py) and
    is exactly its sources' tables: a number typed by hand, or a table taken from another composition's report, fails."""
    readme = (REPO / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(readme) if line.startswith("### SmartFed against the baselines"))
    end = next(i for i, line in enumerate(readme) if i > start and line.startswith("### "))
    tables = [i for i in range(start, end) if readme[i].startswith("|") and not readme[i - 1].startswith("|")]
    marked = {first for _, _, first, _ in readme_tables.marked_tables(readme)}
    assert len(tables) >= 10 and [i + 1 for i in tables if i not in marked] == []  # the statistics, claims, EEQA and overlap tables
    _, changed = readme_tables.refreshed(readme)
    assert changed == [], "run experiments/readme_tables.py"


def test_a_readme_table_joins_its_sources_tables_under_one_header(tmp_path):
    results = tmp_path / "docs" / "results"
    results.mkdir(parents=True)
    (results / "a.md").write_text("x\n| k | v |\n|---|---|\n| a | 1 |\n\n| other |\n|---|\n| z |\n")
    (results / "b.md").write_text("| k | v |\n|---|---|\n| b | 2 |\n| c | 3 |\n")
    readme = ["text", "<!-- table: docs/results/a.md; docs/results/b.md -->", "", "| k | v |", "|---|---|", "| a | 9 |", "", "after"]
    lines, changed = readme_tables.refreshed(readme, tmp_path)
    assert lines == ["text", readme[1], "", "| k | v |", "|---|---|", "| a | 1 |", "| b | 2 |", "| c | 3 |", "", "after"]
    assert changed == ["line 4 (from docs/results/a.md; docs/results/b.md)"]
    assert readme_tables.refreshed(lines, tmp_path)[1] == []
    with pytest.raises(ValueError, match="'docs/results/b.md': expected a table with header '\\| other \\|', found none"):
        readme_tables.table_from(["docs/results/a.md", "docs/results/b.md"], "| other |", tmp_path)
    with pytest.raises(ValueError, match="expected a file under docs/results"):
        readme_tables.table_from(["docs/results/../../../etc/passwd"], "| k | v |", tmp_path)
    with pytest.raises(ValueError, match="README line 1: expected a table within two lines of the marker"):
        readme_tables.marked_tables(["<!-- table: docs/results/a.md -->", "", "", "| k | v |"])
    with pytest.raises(ValueError, match="README line 2: a second marker for the table of line 1"):
        readme_tables.marked_tables(["<!-- table: docs/results/a.md -->", "<!-- table: docs/results/b.md -->", "| k | v |"])
