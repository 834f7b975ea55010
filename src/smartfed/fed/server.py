"""Server side of a round: check each client update, then example-weighted FedAvg of routers."""

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
    if not isinstance(num_examples, int) or num_examples < 1:
        raise UpdateRejected(f"num_examples expected a positive int, found {num_examples!r}")


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
