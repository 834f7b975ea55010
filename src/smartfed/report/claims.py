"""The paper's headline figures (SPEC section 'Headlines') checked against the runs: holds, does not hold,
or cannot tell, with the interval or per-seed range that decides it.

Per composition, SmartFed's run `smartfed` (the defaults of `smartfed run`) against FedIT's run `fedit`
on the same seeds (runs named NAME-seedS are NAME's seeds):

- accuracy, +10.21 pp: the paired 95% bootstrap interval of SmartFed's mean score minus FedIT's (suites
  weighted equally, seeds and items resampled; report/stats.py). Holds: the interval is above 0 and
  reaches 10.21; does not hold: it is below 10.21; cannot tell: it holds both 0 and 10.21.
- convergence 3.95x, communication ~31x, energy ~3.6x: FedIT's / SmartFed's per seed (rounds to FedIT's
  final loss on the curve's items, bytes sent and received, joules: on the seeds where both ran on the same
  device, since joules count CPU seconds: report/runs.py's same_device). Holds: every seed reaches 3/4 of the claim; does not
  hold: no seed does; cannot tell: some do (convergence also when a run was not evaluated every round, or
  when untrained SmartFed, its round 0, is already at or below FedIT's final loss: its head start, not how
  fast its training converges, which the rounds cannot tell apart).
- 10% data beats FedIT on all of it: `smartfed-frac0.1` against `fedit` on all the data at the same scale
  (the data-fraction sweep trains more than the comparison), the paired interval of the mean score (of the
  held-out loss where no suite was scored). Holds: the interval is on SmartFed's side of 0; does not hold:
  on FedIT's side; cannot tell: it holds 0.

A claim the runs cannot decide (no such pair on common seeds) has no row: the comparison's report has the
four ratios, the data-fraction sweep's report the 10% claim. A verdict from fewer than the 3 seeds the
experiments plan (SEEDS_PLANNED) is marked provisional in the table: one more seed can turn it (not the bytes
sent, which no seed changes).
"""

import numpy as np

from smartfed.errors import SmartFedError
from smartfed.report.runs import RunResult, base_name, loss_cells, same_device, scale
from smartfed.report.statistics import on_shared_seeds, score_cells
from smartfed.report.stats import paired

ACCURACY_PP, CONVERGENCE, COMMUNICATION, ENERGY = 10.21, 3.95, 31.0, 3.6
NEAR = 0.75  # a ratio claim holds for a seed at 3/4 of the claimed ratio or more
COMMUNICATION_CLAIM = "~31x less communication"
SEEDS_PLANNED = 3  # every experiment script's seeds (0, 1, 2); a verdict from fewer is provisional


def _scale(result: RunResult) -> list:
    """The comparison's scale (report/runs.py) and the pool: the claims are about SmartFed over the default pool."""
    return scale(result, ("model", "pool", "data", "federation", "training"))


def _runs(results: list[RunResult], composition: str, name: str, like: RunResult | None = None) -> list[RunResult]:
    """The runs `name` and `name`-seedS on `composition`, one per seed, by seed, at the scale of `like` (default:
    the first of them): a FedIT run of the data-fraction sweep is not the reference of the comparison's SmartFed,
    nor the other way round."""
    named = [r for r in results if r.config.data.composition == composition and base_name(r) == name]
    like = like or (named[0] if named else None)
    by_seed: dict[int, RunResult] = {}
    for r in named:
        if _scale(r) != _scale(like):
            continue
        if r.config.run.seed in by_seed:  # two runs of one claim and seed: which one decides it is not ours to pick
            raise SmartFedError(f"two '{name}' runs of {composition} at seed {r.config.run.seed} and the same scale: "
                             f"{by_seed[r.config.run.seed].config.run_dir} and {r.config.run_dir}; report one of them")
        by_seed[r.config.run.seed] = r
    return [by_seed[seed] for seed in sorted(by_seed)]


def _suites_weighted_cells(runs: list[RunResult]) -> tuple[np.ndarray, np.ndarray] | None:
    """(correct x weight, weight) per (seed, item); each suite weighs 1 in all, so the ratio is the mean over suites."""
    suites = sorted(runs[0].score_items)
    if not suites or any(sorted(r.score_items) != suites for r in runs) or any(score_cells(runs, s) is None for s in suites):
        return None
    weights = np.array([[1.0 / len(r.score_items[s]) for s in suites for _ in r.score_items[s]] for r in runs])
    values = np.array([[c for s in suites for c in r.score_items[s]] for r in runs]) * weights
    return values, weights


def _paired(a: list[RunResult], b: list[RunResult], cells) -> tuple[float, float, float] | None:
    """The paired interval of a - b, where both score the same cells (the same suites and items)."""
    if not a or not b or cells(a + b) is None:
        return None
    ca, cb = cells(a), cells(b)
    estimate, low, high, _ = paired(ca, cb)
    return estimate, low, high


def accuracy_claim(smart: list[RunResult], fedit: list[RunResult]) -> tuple[str, str]:
    diff = _paired(smart, fedit, _suites_weighted_cells)
    if diff is None:
        return "cannot tell", "no benchmark scores on the same seeds and items"
    estimate, low, high = (100 * v for v in diff)
    verdict = "holds" if low > 0 and high >= ACCURACY_PP else "does not hold" if high < ACCURACY_PP else "cannot tell"
    return verdict, f"{estimate:+.1f} pp [{low:+.1f}, {high:+.1f}]"


def _ratio_claim(ratios: list[float | None], claim: float, unit: str) -> tuple[str, str]:
    shown = ", ".join("not reached" if r is None else f"{r:.2f}x" for r in ratios)
    near = [r is not None and r >= NEAR * claim for r in ratios]
    verdict = "holds" if all(near) else "does not hold" if not any(near) else "cannot tell"
    return verdict, f"{unit} per seed: {shown}"


def convergence_claim(smart: list[RunResult], fedit: list[RunResult]) -> tuple[str, str]:
    if not all(r.evaluated_every_round for r in smart + fedit):
        return "cannot tell", "held-out loss not evaluated every round"
    verdict, evidence = _ratio_claim([s.speedup_over(f) for s, f in zip(smart, fedit)], CONVERGENCE, "FedIT rounds / rounds")
    ahead = [s.config.run.seed for s, f in zip(smart, fedit) if s.losses[0][1] <= f.losses[-1][1]]
    if ahead:  # reaching FedIT's final loss then times no training: rounds cannot tell how fast training converges
        return "cannot tell", (f"{evidence}; untrained (round 0) SmartFed is already at or below FedIT's final loss "
                               f"(seed{'s' * (len(ahead) > 1)} {', '.join(map(str, ahead))})")
    return verdict, evidence


def data_claim(small: list[RunResult], fedit: list[RunResult]) -> tuple[str, str]:
    seeds = f"{len(small)} seed{'s' * (len(small) > 1)}"
    diff = _paired(small, fedit, _suites_weighted_cells)
    if diff is not None:
        estimate, low, high = (100 * v for v in diff)
        better, worse, shown = low > 0, high < 0, f"score {estimate:+.1f} pp [{low:+.1f}, {high:+.1f}], {seeds}"
    else:
        diff = _paired(small, fedit, loss_cells)
        if diff is None:
            return "cannot tell", "no scores or held-out losses on the same seeds and items"
        estimate, low, high = diff
        better, worse, shown = high < 0, low > 0, f"held-out loss {estimate:+.4f} [{low:+.4f}, {high:+.4f}], {seeds}"
    return ("holds" if better else "does not hold" if worse else "cannot tell"), shown


def composition_claims(results: list[RunResult], composition: str) -> list[tuple[str, int, str, str]]:
    """(claim, seeds, verdict, evidence) rows for one composition: the four ratios where `smartfed` and `fedit`
    ran on common seeds, the 10% claim where `smartfed-frac0.1` and `fedit` (on all the data, at the same scale)
    did; what the runs cannot decide has no row."""
    rows = []
    smart = _runs(results, composition, "smartfed")
    smart, fedit, _ = on_shared_seeds(smart, _runs(results, composition, "fedit", like=smart[0]) if smart else [])
    if smart:
        bytes_ratios = [f.bytes_total / s.bytes_total if s.bytes_total else None for s, f in zip(smart, fedit)]
        rows += [("+10.21 pp accuracy", len(smart), *accuracy_claim(smart, fedit)),
                 ("3.95x faster convergence", len(smart), *convergence_claim(smart, fedit)),
                 (COMMUNICATION_CLAIM, len(smart), *_ratio_claim(bytes_ratios, COMMUNICATION, "FedIT bytes / bytes"))]
        # joules measure CPU work: only seeds where both ran on the same device
        same = [(s, f) for s, f in zip(smart, fedit) if same_device(s, f)]
        if same:
            energy_ratios = [f.energy_j / s.energy_j if s.energy_j else None for s, f in same]
            rows.append(("~3.6x less energy", len(same), *_ratio_claim(energy_ratios, ENERGY, "FedIT J / J")))
    small = _runs(results, composition, "smartfed-frac0.1")
    full = [r for r in (_runs(results, composition, "fedit", like=small[0]) if small else []) if r.config.data.fraction == 1]
    small, full, _ = on_shared_seeds(small, full)
    if small:
        rows.append(("10% data beats FedIT on all", len(small), *data_claim(small, full)))
    return rows


def _provisional(claim: str, seeds: int) -> str:
    if seeds >= SEEDS_PLANNED or claim == COMMUNICATION_CLAIM:  # a router's bytes are the same at every seed
        return ""
    return f" (provisional: {seeds} of {SEEDS_PLANNED} seeds)"


def claims_table(results: list[RunResult]) -> str | None:
    """Markdown: one row per (composition, claim the runs can decide); None when there is none."""
    lines = ["| composition | seeds | paper's claim | verdict | evidence (95% interval or per-seed values) |", "|---|---:|---|---|---|"]
    for composition in dict.fromkeys(r.config.data.composition for r in results):
        lines += [f"| {composition} | {seeds} | {claim} | **{verdict}**{_provisional(claim, seeds)} | {evidence} |"
                  for claim, seeds, verdict, evidence in composition_claims(results, composition)]
    return "\n".join(lines) if len(lines) > 2 else None
