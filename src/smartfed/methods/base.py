"""What a method is, as the server loop, the engines and the report see it.

A method says what it attaches to the base model, what a client trains (or searches) and sends,
whether EEQA quotas apply, whether clients federate at all, and how a client's tokens count as
compute for the energy model. Everything outside `methods/` asks the method object; nothing there
compares method names. Adding a method is one file here and one line in `methods/__init__.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import torch
from torch import nn

from smartfed.data import Example
from smartfed.pool import ExpertPool

if TYPE_CHECKING:
    from smartfed.config import RunConfig


@dataclass(frozen=True)
class LocalWork:
    """What one client's local round computed, besides the new state."""

    train_loss: float
    tokens: int  # real (non-padding) tokens the client forwarded
    importance: dict[str, float] | None = None  # EEQA: matrix -> score, uploaded with the state


class Method:
    name: ClassVar[str]
    federated: ClassVar[bool] = True  # False: every client keeps its own model and nothing is sent
    ships_pool: ClassVar[bool] = True  # clients need the expert pool (its bytes are counted once per client)
    # Client compute per forwarded token, in forward-pass equivalents: a trained token costs a forward
    # and a backward through the frozen base (about 2 passes), a token of a gradient-free search 1.
    passes_per_token: ClassVar[int] = 2
    is_reference: ClassVar[bool] = False  # the method the report's ratios are computed against (FedIT)
    trains_anything: ClassVar[bool] = True  # False: a training-free method; its run is round 0 alone
    folds_into_base: ClassVar[bool] = False  # True: each round's aggregate is folded into the base weights (FLoRA)
    # Config sections that only some methods read, those this one reads (a run of another method ignores them:
    # RunConfig.in_effect)
    config_sections: ClassVar[tuple[str, ...]] = ()
    # The learning rate a run uses when training.lr is 0 (the default): the method's own, chosen on the
    # zh+math dev split by `smartfed tune` (docs/tuning/zh+math/tuning.md). None: the method takes no gradient
    # steps (a training-free one, or LoRAHub's search), so it has no rate.
    lr: ClassVar[float | None] = 5e-3

    def learning_rate(self, config: RunConfig) -> float | None:
        """training.lr if set, else the method's tuned rate; None for a method that takes no gradient steps."""
        return None if self.lr is None else (config.training.lr or self.lr)

    def attach(self, model: nn.Module, pool: ExpertPool, config: RunConfig) -> nn.Module:
        """Put what the method trains into `model` (seeded by the caller); return the model to use."""
        raise NotImplementedError

    def trains(self, config: RunConfig) -> str:
        """What a client trains, in a few words for tables and logs ("linear", "LoRA r8")."""
        raise NotImplementedError

    def uses_eeqa(self, config: RunConfig) -> bool:
        """Whether EEQA quotas are measured, uploaded and re-allocated."""
        return False

    def state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        """Detached copies of what a client trained: exactly what it sends and the server averages."""
        raise NotImplementedError

    def load_state_dict(self, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
        """Copy a state in; a missing or unexpected key, or a wrong shape or dtype, is an error."""
        raise NotImplementedError

    def train(self, model: nn.Module, tokenizer, examples: list[Example], batches: list[list[int]], config: RunConfig,
              seed: int) -> LocalWork:
        """One client's local round on `examples`, step s using the examples `batches[s]`."""
        raise NotImplementedError

    def fold(self, model: nn.Module, aggregate: dict[str, torch.Tensor]) -> None:
        """For a method that folds into the base (it also has `new_aggregate()`, the round's aggregate): apply
        one round's aggregate to `model`'s base weights."""
        raise NotImplementedError
