"""Server side of a round: check each client update, then example-weighted FedAvg of routers."""

import math
from collections.abc import Iterable, Mapping

import torch

from smartfed.experts.attach import state_mismatch


class UpdateRejected(Exception):
    """A client update that must not be aggregated; the message says why."""


def check_update(state: Mapping[str, torch.Tensor], reference: Mapping[str, torch.Tensor], num_examples: int) -> None:
    """Raise UpdateRejected unless `state` has exactly the reference keys, shapes and dtypes, all finite."""
    why = state_mismatch(state, reference)
    if why:
        raise UpdateRejected(why)
    for key, value in state.items():
        if not torch.isfinite(value).all():
            raise UpdateRejected(f"key '{key}': NaN or Inf")
    if isinstance(num_examples, bool) or not isinstance(num_examples, int) or num_examples < 1:
        raise UpdateRejected(f"num_examples expected a positive int, found {num_examples!r}")


def check_importance(importance, matrices: Mapping[str, int]) -> None:
    """Raise UpdateRejected unless `importance` scores exactly the adapted matrices, finite and >= 0."""
    if not isinstance(importance, dict) or importance.keys() != matrices.keys() or not all(
            isinstance(v, float | int) and not isinstance(v, bool) and math.isfinite(v) and v >= 0 for v in importance.values()):
        raise UpdateRejected("importance scores missing, for other matrices, or not finite and >= 0")


class FedAvg:
    """Example-weighted mean of router states, accumulated one update at a time (float64), so a
    round never holds more than one client's update besides the running sum."""

    def __init__(self):
        self.total = 0
        self.sums: dict[str, torch.Tensor] | None = None
        self.dtypes: dict[str, torch.dtype] = {}

    def add(self, state: Mapping[str, torch.Tensor], num_examples: int) -> None:
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
