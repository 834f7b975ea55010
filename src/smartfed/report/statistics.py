"""The statistics table: per setting (runs that differ only in name and seed), the mean over seeds and
items with a 95% bootstrap interval, and a paired comparison with the reference method (FedIT) on the
seeds both ran and the same items (report/stats.py); a comparison on fewer seeds than either side ran
names the seeds it used."""

from functools import partial

import numpy as np

from smartfed.report.runs import RunResult, is_reference_for, loss_cells, same_score_items, setting_key, settings
from smartfed.report.stats import interval, paired


def score_cells(runs: list[RunResult], suite: str) -> tuple[np.ndarray, np.ndarray] | None:
    """(correct, 1) per (run, item of `suite`); None unless every run scored the same items (`same_score_items`)."""
    items = [r.score_items.get(suite) for r in runs]
    if any(not i for i in items) or len({len(i) for i in items}) != 1 or not same_score_items(runs, suite):
        return None
    values = np.array(items, dtype=float)
    return values, np.ones_like(values)


def _ci(cells, scale: float = 1.0, spec: str = ".4f") -> str:
    if cells is None:
        return "-"
    estimate, low, high = interval(*cells)
    return f"{scale * estimate:{spec}} [{scale * low:{spec}}, {scale * high:{spec}}]"


def _versus(mine: list[RunResult], theirs: list[RunResult], cells, repeat: int = 1, scale: float = 1.0,
            spec: str = "+.4f", note: str = "") -> str:
    """`mine` - `theirs` paired over seeds and items (`mine`'s rows repeated `repeat` times); "-" unless both
    sides have cells of the same items."""
    if not mine or not theirs or cells(mine + theirs) is None:
        return "-"
    estimate, low, high, p = paired(_repeated(cells(mine), repeat), cells(theirs))
    return f"{scale * estimate:{spec}} [{scale * low:{spec}}, {scale * high:{spec}}], p={p:.3f}{note}"


def on_shared_seeds(runs: list[RunResult], other: list[RunResult]) -> tuple[list[RunResult], list[RunResult], str]:
    """Both sides' runs on the seeds both ran, and a note naming those seeds when either side ran more
    ("" when they ran the same seeds; both lists empty when they share none)."""
    shared = sorted({r.config.run.seed for r in runs} & {r.config.run.seed for r in other})
    mine, theirs = ([r for r in side if r.config.run.seed in shared] for side in (runs, other))
    partial = len(mine) < len(runs) or len(theirs) < len(other)
    return mine, theirs, f" (seed{'s' * (len(shared) > 1)} {', '.join(map(str, shared))} only)" if partial and shared else ""


def _repeated(cells, times: int):
    """(values, weights) with every seed row repeated `times` times (a deterministic run at each reference seed)."""
    return cells if cells is None or times == 1 else tuple(np.repeat(a, times, axis=0) for a in cells)


def _pairing(runs: list[RunResult], reference: list[RunResult] | None) -> tuple[list, list, str, int]:
    """What to pair with the reference: (the setting's runs, the reference's, the seeds note, how many times
    the setting's rows repeat). A training-free method's one run is what it gives at every seed: paired
    with each of the reference's seeds."""
    if reference is None:
        return [], [], "", 1
    if len(runs) == 1 and not runs[0].method.trains_anything:
        return runs, reference, "", len(reference)
    return *on_shared_seeds(runs, reference), 1


def _reference(run: RunResult, groups: list[list[RunResult]]) -> tuple[list[RunResult] | None, bool]:
    """FedIT's runs at `run`'s scale and data fraction, else (a data-fraction sweep without FedIT at that fraction)
    on all the data; and whether it is the latter."""
    same = next((g for g in groups if is_reference_for(g[0], run)), None)
    if same is not None:
        return same, False
    return next((g for g in groups if is_reference_for(g[0], run, fraction=1)), None), True


def _compared(results: list[RunResult]):
    """Per setting: (label, its runs, the runs paired with FedIT's, FedIT's, the seeds note, how many times the
    setting's rows repeat in the pairing)."""
    groups = settings(results)
    for label, runs in groups.items():
        reference, on_all = _reference(runs[0], list(groups.values()))
        mine, theirs, note, repeat = _pairing(runs, reference)
        yield label, runs, mine, theirs, note + " (FedIT on all the data)" * (on_all and bool(mine)), repeat


def statistics_table(results: list[RunResult]) -> str | None:
    """Markdown, or None when no run recorded per-item losses or scores."""
    suites = list(dict.fromkeys(s for r in results for s in r.score_items))
    if not any(loss_cells(runs) for runs in settings(results).values()) and not suites:
        return None
    header = ["setting", "seeds", "held-out loss [95% CI]", "- FedIT's [95% CI], p",
              *(cell for s in suites for cell in (f"{s} % [95% CI]", "- FedIT's (pp), p"))]
    lines = ["| " + " | ".join(header) + " |", "|---|---:|---|---|" + "---|---|" * len(suites)]
    for label, runs, mine, theirs, note, repeat in _compared(results):
        cells = [label, str(len(runs)), _ci(loss_cells(runs)), _versus(mine, theirs, loss_cells, repeat, note=note)]
        for suite in suites:
            suite_cells = partial(score_cells, suite=suite)
            cells += [_ci(suite_cells(runs), 100, ".1f"), _versus(mine, theirs, suite_cells, repeat, 100, "+.1f", note)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def overview_table(by_composition: dict[str, list[RunResult]]) -> str:
    """Markdown: every setting of every composition's comparison against its FedIT on held-out loss (the columns of
    `statistics_table` that every composition shares), one table across compositions."""
    lines = ["| composition | setting | seeds | held-out loss [95% CI] | - FedIT's [95% CI], p |", "|---|---|---:|---|---|"]
    for composition, results in by_composition.items():
        for label, runs, mine, theirs, note, repeat in _compared(results):
            lines.append(f"| {composition} | {label} | {len(runs)} | {_ci(loss_cells(runs))} | "
                         f"{_versus(mine, theirs, loss_cells, repeat, note=note)} |")
    return "\n".join(lines)




def eeqa_table(results: list[RunResult]) -> str | None:
    """The EEQA ablation: each setting with elastic quotas against the one that differs only in a fixed top-k
    (eeqa.enabled = false), paired on the seeds both ran and the same items; None when no such pair ran."""
    groups = settings(results)
    suites = list(dict.fromkeys(s for r in results for s in r.score_items))
    rows = []
    for label, runs in groups.items():
        if not runs[0].method.uses_eeqa(runs[0].config):
            continue
        fixed = next(((name, other) for name, other in groups.items() if not other[0].config.eeqa.enabled
                      and setting_key(other[0], "eeqa.enabled") == setting_key(runs[0], "eeqa.enabled")), None)
        if fixed is None:
            continue
        name, other = fixed
        mine, theirs, note = on_shared_seeds(runs, other)
        if not mine:  # no seed in common
            continue
        cells = [f"{label} - {name}", str(len(mine)), _versus(mine, theirs, loss_cells, note=note)]
        cells += [_versus(mine, theirs, partial(score_cells, suite=suite), 1, 100, "+.1f", note) for suite in suites]
        rows.append("| " + " | ".join(cells) + " |")
    if not rows:
        return None
    header = ["EEQA - fixed top-k", "seeds", "held-out loss [95% CI], p", *(f"{s} (pp) [95% CI], p" for s in suites)]
    return "\n".join(["| " + " | ".join(header) + " |",
                      "|---|---:|---|" + "---|" * len(suites), *rows])
