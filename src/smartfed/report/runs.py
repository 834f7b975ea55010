"""`smartfed report`: the comparison table, ratios against FedIT computed from the runs, and PNG
plots (held-out loss per round, loss vs bytes sent, score vs data fraction, EEQA quota heatmaps)."""

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from smartfed.config import RunConfig  # noqa: E402
from smartfed.eval.generate import mean_loss  # noqa: E402
from smartfed.errors import SmartFedError  # noqa: E402
from smartfed.fed.records import RoundRecord, Summary  # noqa: E402
from smartfed.fed.run_folder import WHERE_IT_RAN, RunFolder  # noqa: E402
from smartfed.io import atomic_path  # noqa: E402
from smartfed.methods import Method, get_method  # noqa: E402
from smartfed.pool.sources import HUB  # noqa: E402
from smartfed.report.stats import interval  # noqa: E402


@dataclass
class RunResult:
    name: str
    config: RunConfig
    metrics: list[RoundRecord]
    summary: Summary
    score_items: dict[str, list[float]] = field(default_factory=dict)  # suite -> 1.0 / 0.0 per item, in order
    score_ids: dict[str, list[str]] = field(default_factory=dict)  # suite -> each item's id, in the same order (where all have one)
    ran_on: tuple[str, ...] = ()  # the devices its header recorded, in order (RunFolder.devices; none in older runs)

    @classmethod
    def read(cls, run_dir: Path) -> "RunResult":
        run = RunFolder(run_dir)
        summary = run.summary()
        scored = _scored_items(Path(run_dir) / "scores.json")
        return cls(Path(run_dir).name, run.config(), run.metrics(), summary,
                   {s: [float(i["correct"]) for i in items] for s, items in scored.items()},
                   {s: [str(i["id"]) for i in items] for s, items in scored.items() if all("id" in i for i in items)},
                   tuple(run.devices()))

    @property
    def device(self) -> str:
        """Where it ran: the recorded devices, or, for a run that recorded none, the model.device it asked for."""
        return ", then ".join(self.ran_on) or self.config.model.device

    @property
    def loss_items(self) -> list[tuple[float, int]] | None:
        """(summed NLL, tokens) per held-out item at the last evaluated round, if the run recorded them."""
        return next((m.heldout_items for m in reversed(self.metrics) if m.heldout_loss is not None), None)

    @property
    def method(self) -> Method:
        return get_method(self.config.run.method)

    @property
    def losses(self) -> list[tuple[int, float]]:
        """(round, held-out loss) of every evaluated round on the same items: the curve's (`eval.curve_examples`,
        the first items of the held-out set; the last round, scored on all of them, is cut to those)."""
        n = self.config.eval.curve_examples or None

        def curve(m: RoundRecord) -> float:
            if m.heldout_items and n:
                return mean_loss(m.heldout_items[:n])
            return m.curve_loss if m.curve_loss is not None else m.heldout_loss  # runs of own models record the curve's loss

        return [(m.round, curve(m)) for m in self.metrics if m.heldout_loss is not None]

    def curve_items(self, round_: int) -> list[tuple[float, int]] | None:
        """(summed NLL, tokens) per item of the curve at `round_`, if that round recorded them."""
        m = next((m for m in self.metrics if m.round == round_ and m.heldout_loss is not None), None)
        return m.heldout_items[: self.config.eval.curve_examples or None] if m and m.heldout_items else None

    @property
    def bytes_total(self) -> int:
        return self.summary.cumulative_bytes_up + self.summary.cumulative_bytes_down

    @property
    def energy_j(self) -> float:
        return self.summary.energy_compute_j + self.summary.energy_radio_j

    @property
    def token_passes(self) -> int:
        """Client compute over the run in forward-pass token equivalents (the method's passes per token)."""
        return self.method.passes_per_token * sum(c.tokens or 0 for m in self.metrics for c in m.clients)

    @property
    def mean_score(self) -> float | None:
        scores = self.summary.scores
        return sum(scores.values()) / len(scores) if scores else None

    def rounds_to_reach(self, target: float) -> int | None:
        """First round whose held-out loss is <= target; None if no evaluated round gets there."""
        return next((r for r, loss in self.losses if r > 0 and loss <= target), None)

    def speedup_over(self, fedit: "RunResult") -> float | None:
        """FedIT's rounds to its own final loss on the curve's items / this run's rounds to that loss (None: never reached).
        Meaningful only where both evaluated every round (`evaluated_every_round`)."""
        target = fedit.losses[-1][1]
        reach, fedit_reach = self.rounds_to_reach(target), fedit.rounds_to_reach(target)
        return fedit_reach / reach if reach and fedit_reach else None

    @property
    def evaluated_every_round(self) -> bool:
        return self.config.eval.every == 1


def _scored_items(path: Path) -> dict[str, list[dict]]:
    """suite -> its items (each with `correct`) from a run's scores.json; {} where the run scored none. A file that is
    not that is an error naming the file, the key, what was expected and what was found."""
    if not path.is_file():
        return {}
    try:
        suites = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise SmartFedError(f"{path}: expected JSON, found {type(err).__name__}: {err}") from None
    if not isinstance(suites, dict):
        raise SmartFedError(f"{path}: expected a JSON object of suites, found {type(suites).__name__}")
    suites = suites.get("suites", suites)  # scores.json of smartfed 0.1 held the suites at the top
    scored = {s: r.get("items", []) for s, r in suites.items() if isinstance(r, dict)}
    for suite, items in scored.items():
        bad = next((n for n, i in enumerate(items if isinstance(items, list) else [None])
                    if not isinstance(i, dict) or not isinstance(i.get("correct"), (bool, int, float))), None)
        if bad is not None:
            found = items[bad] if isinstance(items, list) else items
            raise SmartFedError(f"{path}: suites.{suite}.items[{bad}] expected an object with a boolean 'correct', found {str(found)[:80]!r}")
    return scored


def loss_cells(runs: list[RunResult]) -> tuple[np.ndarray, np.ndarray] | None:
    """(summed NLL, answer tokens) per (run, held-out item); None unless every run scored the same items: as
    many, with the same answer-token count each (what an item's tokens are does not depend on the method)."""
    items = [r.loss_items for r in runs]
    if any(i is None for i in items) or len({len(i) for i in items}) != 1:
        return None
    cells = np.array(items, dtype=float)  # (seeds, items, 2)
    if not (cells[..., 1] == cells[:1, :, 1]).all():
        return None
    return cells[..., 0], cells[..., 1]


def same_score_items(runs: list[RunResult], suite: str) -> bool:
    """Whether the runs scored the same items of `suite`, in the same order: by item id where they recorded ids."""
    return len({tuple(r.score_ids[suite]) for r in runs if r.score_ids.get(suite)}) <= 1


def base_name(result: RunResult) -> str:
    """The run's name without its seed suffix (`fedit-seed2` -> `fedit`): the name of its setting."""
    return re.sub(r"-seed\d+$", "", result.name)


def _adapter_names(adapters: tuple[str, ...]) -> tuple[str, ...]:
    """Adapter folders by name (hub sources as given): a module rebuilt on another machine, unpacked elsewhere,
    differs in float rounding only (README)."""
    return tuple(a if a.startswith(HUB) else Path(a).name for a in adapters)


def setting_key(result: RunResult, *ignored: str) -> list:
    """What the runs of one setting share: the config in effect but its name, seed, WHERE_IT_RAN (a seed run on a
    GPU machine, its adapters and data unpacked elsewhere) and `ignored`, with the output folder and the adapter
    folders by name."""
    same = {k: v for k, v in result.config.in_effect().items() if k not in ("run.name", "run.seed", *WHERE_IT_RAN, *ignored)}
    same["run.out_dir"] = Path(same.get("run.out_dir") or "").name
    same["pool.adapters"] = _adapter_names(same.get("pool.adapters") or ())
    return sorted(same.items(), key=str)


def settings(results: list[RunResult]) -> dict[str, list[RunResult]]:
    """Label -> the runs of one setting, by seed: runs whose names differ only in their -seedN suffix and whose
    configs differ only in name, seed and where they ran, in what their method reads (`setting_key`; two runs of
    one config under other names stay apart). The label is the shortest run name of the setting."""
    groups: dict[str, list[RunResult]] = {}
    for r in results:
        groups.setdefault(base_name(r) + repr(setting_key(r)), []).append(r)
    return {min((r.name for r in runs), key=len): sorted(runs, key=lambda r: r.config.run.seed) for runs in groups.values()}


# What two compared runs may differ in beyond the method: where the data, the device and the gradient memory
# live, the learning rate (tuned per method), what only decides whether a round goes on, and the data fraction
# (what the data-efficiency claim varies)
NOT_SCALE = ("model.device", "data.dir", "data.fraction", "training.lr", "training.gradient_checkpointing",
             "federation.client_timeout_s", "federation.min_clients")


def scale(result: RunResult, sections: tuple[str, ...] = ("model", "data", "federation", "training")) -> list:
    """What a run is compared at: its settings in `sections` but NOT_SCALE. Evaluation may differ (a pairing
    needs the same items, and says so if not); the pool is the coverage study's variable, so only the
    headline claims (SmartFed with the default pool) add it."""
    flat = {**result.config.flat(), "pool.adapters": _adapter_names(result.config.pool.adapters)}
    return sorted(((k, v) for k, v in flat.items() if k.split(".")[0] in sections and k not in NOT_SCALE), key=str)


def is_reference_for(ref: RunResult, result: RunResult, fraction: float | None = None) -> bool:
    """Whether `ref` is FedIT at `result`'s scale on `fraction` of the data (default: `result`'s fraction)."""
    fraction = result.config.data.fraction if fraction is None else fraction
    return ref.method.is_reference and scale(ref) == scale(result) and ref.config.data.fraction == fraction


def fedit_of(result: RunResult, results: list[RunResult]) -> RunResult | None:
    """The FedIT run at the same scale and data fraction, the reference for ratios: the one of the same
    seed where there is one (a training-free run, one seed for all, gets the first)."""
    same_data = [r for r in results if is_reference_for(r, result)]
    return next((r for r in same_data if r.config.run.seed == result.config.run.seed), same_data[0] if same_data else None)


def _fmt(value, spec: str, missing: str = "-") -> str:
    return missing if value is None else format(value, spec)


def summary_table(results: list[RunResult]) -> str:
    suites = list(dict.fromkeys(s for r in results for s in r.summary.scores or {}))
    lines = ["| run | method | router | EEQA | data | " + " | ".join(f"{s} %" for s in suites) + (" | " if suites else "")
             + "held-out loss (all items) | curve: start -> end | rounds to FedIT's final curve loss | MB up | MB down | energy kJ | client CPU s "
             "| client compute (k token-passes) | rounds wall s | scoring wall s | device |",
             "|---|---|---|---|---:|" + "---:|" * len(suites) + "---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for r in results:
        c, fedit = r.config, fedit_of(r, results)
        every_round = fedit is not None and r.evaluated_every_round and fedit.evaluated_every_round
        reach = r.rounds_to_reach(fedit.losses[-1][1]) if every_round else None
        scores = r.summary.scores or {}
        cells = [r.name, c.run.method, r.method.trains(c), "on" if r.method.uses_eeqa(c) else "off", f"{c.data.fraction:g}",
                 *(_fmt(None if scores.get(s) is None else 100 * scores[s], ".1f") for s in suites),
                 f"{r.summary.final_heldout_loss:.4f} ({len(r.loss_items or []) or c.eval.examples})",
                 f"{r.losses[0][1]:.4f} -> {r.losses[-1][1]:.4f}" + (f" ({c.eval.curve_examples})" if c.eval.curve_examples else ""),
                 _fmt(reach, "d", "not reached") if every_round else "-",
                 f"{r.summary.cumulative_bytes_up / 1e6:.2f}", f"{r.summary.cumulative_bytes_down / 1e6:.2f}",
                 f"{r.energy_j / 1e3:.2f}", f"{r.summary.client_cpu_s:.0f}", f"{r.token_passes / 1e3:.1f}",
                 f"{r.summary.wall_s:.0f}", _fmt(r.summary.scores_wall_s, ".0f"), r.device]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def same_device(a: RunResult, b: RunResult) -> bool:
    """Whether two runs ran on one device: energy is client CPU seconds times watts (metrics/energy.py), which
    measures CPU work, so only runs on the same device compare in joules. Where both recorded the device they
    resolved: each on one device only, the same. Where neither did (older runs): the model.device both asked
    for. Where one did: the other asked for that kind of device by name (`auto` names no machine)."""
    if a.ran_on and b.ran_on:
        return len(set(a.ran_on)) == 1 and set(a.ran_on) == set(b.ran_on)
    if not (a.ran_on or b.ran_on):
        return a.config.model.device == b.config.model.device
    recorded, other = (a, b) if a.ran_on else (b, a)
    kind = lambda device: device.split()[0].split(":")[0]  # noqa: E731  cuda:0 (NVIDIA H200) -> cuda
    asked = other.config.model.device
    return len(set(recorded.ran_on)) == 1 and asked != "auto" and kind(asked) == kind(recorded.ran_on[0])


def _energy_ratio(fedit: RunResult, r: RunResult) -> str:
    if not same_device(fedit, r):
        return f"- ({r.device} vs {fedit.device})"
    return f"{fedit.energy_j / r.energy_j:.2f}x" if r.energy_j else "-"


def ratio_table(results: list[RunResult]) -> str:
    """Each run against the FedIT run on the same data: the paper's four headline comparisons."""
    lines = ["| run | vs | mean score - FedIT's (pp) | held-out loss - FedIT's | convergence (FedIT rounds / rounds to FedIT's final curve loss) "
             "| FedIT bytes / bytes | FedIT energy / energy | FedIT compute / compute (token-passes) |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        fedit = fedit_of(r, results)
        if fedit is None or r is fedit:
            continue
        speedup = r.speedup_over(fedit)
        convergence = f"{speedup:.2f}x" if speedup else "not reached"
        if not (r.evaluated_every_round and fedit.evaluated_every_round):  # only rounds that were evaluated can count
            convergence = "- (not evaluated every round)"
        score_delta = None if r.mean_score is None or fedit.mean_score is None else 100 * (r.mean_score - fedit.mean_score)
        bytes_ratio = f"{fedit.bytes_total / r.bytes_total:.2f}x" if r.bytes_total else "nothing sent"
        lines.append(f"| {r.name} | {fedit.name} | {_fmt(score_delta, '+.1f')} | {r.summary.final_heldout_loss - fedit.summary.final_heldout_loss:+.4f} | {convergence} | "
                     f"{bytes_ratio} | {_energy_ratio(fedit, r)} | "
                     f"{f'{fedit.token_passes / r.token_passes:.2f}x' if r.token_passes else '-'} |")
    return "\n".join(lines)


def _style(r: RunResult, i: int) -> dict:
    """One colour per run (20 before any repeats), dashed for a method that could use EEQA and runs without it."""
    could = r.method.uses_eeqa(r.config.with_values({"eeqa.enabled": True}))
    return {"color": plt.cm.tab20(i % 20), "linestyle": "--" if could and not r.method.uses_eeqa(r.config) else "-",
            "marker": "o", "label": r.name}


def _legend_and_grid(ax) -> None:
    if ax.get_legend_handles_labels()[0]:  # a plot of runs that send nothing has no line
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    ax.grid(alpha=0.3)


def _curve(runs: list[RunResult], rounds: list[int]) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None, str]:
    """(estimate, low, high, what the band is) per round. Where every run recorded the curve's items at every round:
    the ratio of sums over seeds and items with its 95% bootstrap interval (report/stats.py); else the mean over
    seeds with a min-to-max band, or no band for a single seed."""
    cells = [[r.curve_items(rd) for r in runs] for rd in rounds]
    if all(x is not None for row in cells for x in row) and all(len({len(x) for x in row}) == 1 for row in cells):
        bounds = np.array([interval(*np.moveaxis(np.array(row, dtype=float), -1, 0)) for row in cells])  # row: (seeds, items, 2)
        return bounds[:, 0], bounds[:, 1], bounds[:, 2], "95% CI"
    values = np.array([[dict(r.losses)[rd] for rd in rounds] for r in runs])  # (seeds, rounds)
    if len(runs) > 1:
        return values.mean(0), values.min(0), values.max(0), "min-max"
    return values[0], None, None, "no band"


def loss_plot(results: list[RunResult], out: Path) -> Path:
    """Held-out loss per round on the curve's items, over seeds, with a band (`_curve`)."""
    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    for i, (label, runs) in enumerate(settings(results).items()):
        rounds = sorted(set.intersection(*(set(dict(r.losses)) for r in runs)))
        center, low, high, band = _curve(runs, rounds)
        if not runs[0].method.trains_anything:  # its round 0 is its model at every round: a level, not a point
            ax.axhline(center[0], color=plt.cm.tab20(i % 20), linestyle=":", label=f"{label} (trains nothing)")
            continue
        ax.plot(rounds, center, **(_style(runs[0], i) | {"label": f"{label} ({len(runs)} seed{'s' * (len(runs) > 1)}, {band})"}))
        if low is not None:
            ax.fill_between(rounds, low, high, color=plt.cm.tab20(i % 20), alpha=0.2)
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set_xlabel("round")
    ax.set_ylabel("held-out loss (NLL per answer token)")
    _legend_and_grid(ax)
    return _save(fig, out)


def bytes_plot(results: list[RunResult], out: Path) -> Path:
    """Held-out loss against cumulative bytes sent and received (settings that send something), over seeds with
    the loss plot's band (`_curve`); bytes are the seeds' mean at each round."""
    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    for i, (label, runs) in enumerate(settings(results).items()):
        sent = [{m.round: m.cumulative_bytes_up + m.cumulative_bytes_down for m in r.metrics} for r in runs]
        rounds = sorted(rd for rd in set.intersection(*(set(dict(r.losses)) for r in runs))
                        if rd > 0 and all(s[rd] > 0 for s in sent))
        if not rounds:
            continue
        megabytes = [np.mean([s[rd] for s in sent]) / 1e6 for rd in rounds]
        center, low, high, band = _curve(runs, rounds)
        ax.plot(megabytes, center, **(_style(runs[0], i) | {"label": f"{label} ({len(runs)} seed{'s' * (len(runs) > 1)}, {band})"}))
        if low is not None:
            ax.fill_between(megabytes, low, high, color=plt.cm.tab20(i % 20), alpha=0.2)
    ax.set_xscale("log")
    ax.set_xlabel("MB sent + received by all clients (log scale)")
    ax.set_ylabel("held-out loss")
    _legend_and_grid(ax)
    return _save(fig, out)


def _final_loss_band(runs: list[RunResult]) -> tuple[float, float, float]:
    """(estimate, low, high) of the final held-out loss over seeds: the 95% bootstrap interval over seeds and items where
    every run recorded the same items, else the mean with a min-to-max band."""
    cells = loss_cells(runs)
    if cells is not None:
        return interval(*cells)
    losses = [r.summary.final_heldout_loss for r in runs]
    return float(np.mean(losses)), min(losses), max(losses)


def _errorbar(ax, x: list[float], bands: list[tuple[float, float, float]], label: str) -> None:
    center, low, high = (np.array(column) for column in zip(*bands))
    below, above = np.clip(center - low, 0, None), np.clip(high - center, 0, None)  # a bootstrap interval may miss its estimate
    ax.errorbar(x, center, yerr=[below, above], marker="o", capsize=3, label=label)


def fraction_plot(results: list[RunResult], out: Path) -> Path | None:
    """Mean benchmark score (min-to-max over seeds) and final held-out loss (95% interval over seeds and items, where
    recorded) against data fraction, per method (sweeps only)."""
    by_setting: dict[str, dict[float, list[RunResult]]] = {}
    for r in results:  # runs that differ only in their data fraction, seed and name form one sweep
        by_setting.setdefault(repr(setting_key(r, "data.fraction")), {}).setdefault(r.config.data.fraction, []).append(r)
    sweeps = {_sweep_label([r for rs in by_fraction.values() for r in rs]): by_fraction
              for by_fraction in by_setting.values() if len(by_fraction) > 1}
    if not sweeps:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    for method, by_fraction in sweeps.items():
        fractions = sorted(by_fraction)
        runs = [by_fraction[f] for f in fractions]
        label = f"{method} ({', '.join(str(len(rs)) for rs in runs)} seeds)"
        if all(r.mean_score is not None for rs in runs for r in rs):
            scores = [[100 * r.mean_score for r in rs] for rs in runs]
            _errorbar(left, fractions, [(float(np.mean(v)), min(v), max(v)) for v in scores], label)
        _errorbar(right, fractions, [_final_loss_band(rs) for rs in runs], label)
    for ax, label in ((left, "mean benchmark score (%)"), (right, "final held-out loss")):
        ax.set_xscale("log")
        ax.set_xlabel("fraction of each client's data")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, out)


def _sweep_label(runs: list[RunResult]) -> str:
    """The name the runs of a sweep share (`fedit-frac0.1`, `fedit-seed1` -> `fedit`), else what they train."""
    first = min((base_name(r) for r in runs), key=len)
    if all(r.name.startswith(first) for r in runs):
        return first
    return f"{runs[0].config.run.method} ({runs[0].method.trains(runs[0].config)})"


def quota_heatmap(run_dir: Path, out: Path) -> Path:
    """Quotas k_j per round: one panel per round, layers (rows) x matrix types (columns)."""
    metrics = [m for m in RunFolder(run_dir).metrics() if m.round > 0]
    if not metrics:
        raise ValueError(f"{run_dir}: expected at least one finished round, found none")
    names = list(metrics[0].quotas)
    parsed = [re.search(r"\.(\d+)\.(?:.*\.)?([^.]+)$", n) for n in names]
    if not all(parsed):  # not a layered model: one row per matrix
        parsed_keys = [(i, "k_j") for i in range(len(names))]
    else:
        parsed_keys = [(int(p.group(1)), p.group(2)) for p in parsed]
    layers = sorted({layer for layer, _ in parsed_keys})
    types = list(dict.fromkeys(t for _, t in parsed_keys))
    fig, axes = plt.subplots(1, len(metrics), figsize=(1.5 + 1.6 * len(metrics) * max(1, len(types) / 7), 1.5 + 0.16 * len(layers)),
                             squeeze=False, sharey=True)
    vmax = max(max(m.quotas.values()) for m in metrics)
    for ax, m in zip(axes[0], metrics):
        grid = np.full((len(layers), len(types)), np.nan)
        for name, (layer, kind) in zip(names, parsed_keys):
            grid[layers.index(layer), types.index(kind)] = m.quotas[name]
        image = ax.imshow(grid, aspect="auto", cmap="viridis", interpolation="nearest", vmin=0, vmax=vmax)
        ax.set_title(f"round {m.round}", fontsize=8)
        ax.set_xticks(range(len(types)), types, rotation=90, fontsize=6)
    axes[0][0].set_yticks(range(len(layers)), [str(layer) for layer in layers], fontsize=6)
    axes[0][0].set_ylabel("layer")
    fig.suptitle(f"{Path(run_dir).name}: experts per matrix (k_j)", fontsize=9)
    fig.colorbar(image, ax=axes[0].tolist(), label="k_j")
    return _save(fig, out, tight=False)  # the colourbar spans the panels: no tight layout


def _save(fig, out: Path, tight: bool = True) -> Path:
    if tight:
        fig.tight_layout()
    with atomic_path(out) as tmp:  # two sweeps writing one report never leave a torn PNG
        fig.savefig(tmp, dpi=120, format="png")
    plt.close(fig)
    return out
