"""report.md and its plots from run folders."""

import re
from pathlib import Path

from smartfed.io import atomic_write_text
from smartfed.report.claims import claims_table
from smartfed.report.runs import RunResult, bytes_plot, fraction_plot, loss_plot, quota_heatmap, ratio_table, summary_table
from smartfed.report.statistics import eeqa_table, statistics_table


def read_runs(run_dirs: list[Path]) -> list[RunResult]:
    """The runs of `run_dirs`, each named by its folder; a name that another folder's run has too (a coverage pool
    beside the default) is prefixed with its parent folder's name, except in the first run's folder (the
    comparison's own folder: its runs keep their names)."""
    results = [RunResult.read(Path(d)) for d in run_dirs]
    names = [r.name for r in results]
    home = Path(run_dirs[0]).parent if run_dirs else None
    for d, r in zip(run_dirs, results):
        if names.count(r.name) > 1 and Path(d).parent != home:
            r.name = f"{Path(d).parent.name}/{r.name}"
    return results


def report_text(results: list[RunResult], plots: list[Path]) -> str:
    """report.md: the summary, the ratios against FedIT, the statistics, the EEQA ablation, the claims, then `plots`."""
    ratios = ratio_table(results)
    text = summary_table(results) + "\n"
    if ratios.count("\n") > 1:
        text += "\nAgainst FedIT on the same data (computed from the runs above):\n\n" + ratios + "\n"
    stats = statistics_table(results)
    if stats:
        text += ("\nMean over seeds and items with a 95% bootstrap interval (seeds and items resampled together), and the "
                 "paired difference with FedIT on the seeds both ran and the same items (the seeds are named where either side "
                 "ran more):\n\n" + stats + "\n")
    ablation = eeqa_table(results)
    if ablation:
        text += ("\nThe EEQA ablation: elastic quotas minus a fixed top-k with everything else the same, paired on the seeds "
                 "both ran and the same items (negative loss: EEQA better):\n\n" + ablation + "\n")
    claims = claims_table(results)
    if claims:
        text += ("\nThe paper's headline figures against these runs (`smartfed`, or `smartfed-frac0.1`, against `fedit` at the same "
                 "scale on the seeds both ran; the rules are in report/claims.py):\n\n" + claims + "\n")
    return text + "\n" + "\n".join(f"![{p.stem}]({p.name})" for p in plots) + "\n"


def _linked_plots(report: Path) -> set[str]:
    """The images a report.md shows (`![name](file.png)`), none where there is no report yet."""
    return set(re.findall(r"!\[[^\]]*\]\(([^)/]+\.png)\)", report.read_text())) if report.is_file() else set()


def write_report(run_dirs: list[Path], out_dir: Path) -> str:
    out_dir.mkdir(parents=True, exist_ok=True)
    earlier = _linked_plots(out_dir / "report.md")
    results = read_runs(run_dirs)
    plots = [loss_plot(results, out_dir / "heldout_loss.png"), bytes_plot(results, out_dir / "loss_vs_bytes.png"),
             fraction_plot(results, out_dir / "data_fraction.png")]
    plots += [quota_heatmap(Path(d), out_dir / f"quotas-{r.name.replace('/', '_')}.png") for d, r in zip(run_dirs, results)
              if r.method.uses_eeqa(r.config) and r.method.federated]  # clients of `local` each keep their own quotas
    text = report_text(results, [p for p in plots if p])
    atomic_write_text(out_dir / "report.md", text)
    for name in earlier - {p.name for p in plots if p}:  # the earlier report's plots of what this one no longer has
        (out_dir / name).unlink(missing_ok=True)
    return text
