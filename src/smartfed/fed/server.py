"""Server side of a round: check each client update against bounds, then aggregate the accepted ones.

`aggregation.rule`:
- fedavg: the example-weighted mean, streamed (one update held at a time besides the running sum);
- clipped-fedavg: each update's change clipped to the round's median change norm, each client's
  weight capped at `weight_cap` x the round's median example count, then the weighted mean;
- trimmed-mean / median: coordinate-wise, unweighted, by Flower's own `aggregate_trimmed_avg` and
  `aggregate_median`. The robust rules need the whole round at once, so they hold every accepted
  update of a round (K router states; Krum and Bulyan would too, and need K > 2f + 2 clients a round).
"""

import math
from collections.abc import Iterable, Mapping

import numpy as np
import torch
from flwr.server.strategy.aggregate import aggregate_median, aggregate_trimmed_avg

from smartfed.experts.attach import state_mismatch


class UpdateRejected(Exception):
    """A client update that must not be aggregated; the message says why."""


def update_norm(state: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor]) -> float:
    """||state - reference|| over every key, in float64 (no overflow for any finite float32)."""
    return math.sqrt(sum(float((state[k].double() - reference[k].double()).pow(2).sum()) for k in reference))


def state_norm(state: Mapping[str, torch.Tensor]) -> float:
    return math.sqrt(sum(float(v.double().pow(2).sum()) for v in state.values()))


def check_update(state: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor], num_examples: int,
                 max_norm_ratio: float = math.inf, max_num_examples: int = 2**62) -> None:
    """Raise UpdateRejected unless `state` has exactly the reference keys, shapes and dtypes, all finite,
    changes the reference by at most max_norm_ratio x max(||reference||, 1), and num_examples is an int
    in [1, max_num_examples]."""
    why = state_mismatch(state, reference)
    if why:
        raise UpdateRejected(why)
    for key, value in state.items():
        if not torch.isfinite(value).all():
            raise UpdateRejected(f"key '{key}': NaN or Inf")
    if isinstance(num_examples, bool) or not isinstance(num_examples, int) or not 1 <= num_examples <= max_num_examples:
        raise UpdateRejected(f"num_examples expected an int in [1, {max_num_examples}], found {num_examples!r}")
    bound = max_norm_ratio * max(state_norm(reference), 1.0)
    change = update_norm(state, reference)
    if change > bound:
        raise UpdateRejected(f"update norm expected <= {bound:.4g} (aggregation.max_update_norm x max(||global||, 1)), found {change:.4g}")


def check_importance(importance, matrices: Mapping[str, int], max_importance: float = math.inf) -> None:
    """Raise UpdateRejected unless `importance` scores exactly the adapted matrices, finite, in [0, max_importance]."""
    if not isinstance(importance, dict) or importance.keys() != matrices.keys() or not all(
            isinstance(v, float | int) and not isinstance(v, bool) and math.isfinite(v) and 0 <= v <= max_importance
            for v in importance.values()):
        raise UpdateRejected(f"importance scores missing, for other matrices, or not finite and in [0, {max_importance:g}]")


class FedAvg:
    """Example-weighted mean of router states, accumulated one update at a time (float64), so a
    round never holds more than one client's update besides the running sum."""

    def __init__(self):
        self.total = 0
        self.sums: dict[str, torch.Tensor] | None = None
        self.dtypes: dict[str, torch.dtype] = {}

    def add(self, state: Mapping[str, torch.Tensor], num_examples: float) -> None:
        if self.sums is None:
            self.sums = {k: v.double() * num_examples for k, v in state.items()}
            self.dtypes = {k: v.dtype for k, v in state.items()}
        else:
            for k, v in state.items():
                self.sums[k] += v.double() * num_examples
        self.total += num_examples

    def result(self) -> dict[str, torch.Tensor]:
        if self.sums is None:
            raise ValueError("aggregate expected at least one update, found none")
        return {k: (v / self.total).to(self.dtypes[k]) for k, v in self.sums.items()}


def aggregate(updates: Iterable[tuple[Mapping[str, torch.Tensor], int]]) -> dict[str, torch.Tensor]:
    """sum_c n_c * state_c / sum_c n_c, key by key (accumulated in float64, returned in each key's dtype)."""
    fedavg = FedAvg()
    for state, num_examples in updates:
        fedavg.add(state, num_examples)
    return fedavg.result()


class RobustAggregate:
    """clipped-fedavg, trimmed-mean or median over the round's accepted updates (held until the end)."""

    def __init__(self, rule: str, reference: Mapping[str, torch.Tensor], trim_fraction: float, weight_cap: float):
        self.rule, self.reference, self.trim_fraction, self.weight_cap = rule, reference, trim_fraction, weight_cap
        self.updates: list[tuple[Mapping[str, torch.Tensor], int]] = []

    def add(self, state: Mapping[str, torch.Tensor], num_examples: int) -> None:
        self.updates.append((state, num_examples))

    def result(self) -> dict[str, torch.Tensor]:
        if not self.updates:
            raise ValueError("aggregate expected at least one update, found none")
        keys = list(self.reference)
        if self.rule == "clipped-fedavg":
            return self._clipped_mean(keys)
        arrays = [([state[k].double().numpy() for k in keys], n) for state, n in self.updates]
        merged = aggregate_median(arrays) if self.rule == "median" else aggregate_trimmed_avg(arrays, self.trim_fraction)
        return {k: torch.from_numpy(np.asarray(v)).to(self.reference[k].dtype) for k, v in zip(keys, merged)}

    def _clipped_mean(self, keys: list[str]) -> dict[str, torch.Tensor]:
        norms = [update_norm(state, self.reference) for state, _ in self.updates]
        clip = float(np.median(norms))
        cap = self.weight_cap * float(np.median([n for _, n in self.updates]))
        fedavg = FedAvg()
        for (state, n), norm in zip(self.updates, norms):
            factor = min(1.0, clip / norm) if norm > 0 else 1.0
            clipped = {k: self.reference[k].double() + factor * (state[k].double() - self.reference[k].double()) for k in keys}
            fedavg.add(clipped, min(n, cap))
        return {k: v.to(self.reference[k].dtype) for k, v in fedavg.result().items()}


def new_aggregate(rule: str, reference: Mapping[str, torch.Tensor], trim_fraction: float = 0.2, weight_cap: float = 2.0):
    """The round's aggregate for `rule` (an object with add(state, num_examples) and result())."""
    return FedAvg() if rule == "fedavg" else RobustAggregate(rule, reference, trim_fraction, weight_cap)
