"""Server side of a round: check each client update, then example-weighted FedAvg of routers."""

from collections.abc import Mapping, Sequence

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


def aggregate(updates: Sequence[tuple[Mapping[str, torch.Tensor], int]]) -> dict[str, torch.Tensor]:
    """sum_c n_c * state_c / sum_c n_c, key by key (accumulated in float64, returned in each key's dtype)."""
    if not updates:
        raise ValueError("aggregate expected at least one update, found none")
    total = sum(n for _, n in updates)
    first = updates[0][0]
    return {
        key: (sum(state[key].double() * n for state, n in updates) / total).to(first[key].dtype)
        for key in first
    }
