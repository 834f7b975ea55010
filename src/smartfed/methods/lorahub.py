"""LoRAHub (Huang et al. 2024): a static mix of whole pool modules, y = W0 x + sum_n w_n LoRA_n(x),
with the weights w found gradient-free on a few of the client's examples.

As in LoRAHub's code: Nevergrad's NGOpt over w in [-1.5, 1.5]^N, minimising the cross-entropy on
the examples plus 0.05 * mean |w|. Federated: each client starts its search from the global weights
and the server averages the weights the clients found (example-weighted), like any other state.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from smartfed.data import Example
from smartfed.data.tokenize import collate, encode_for_training
from smartfed.experts import routed_layers, set_module_weights
from smartfed.methods.base import LocalWork
from smartfed.methods.routed import RoutedMethod

if TYPE_CHECKING:
    from smartfed.config import RunConfig

BOUND = 1.5
L1_WEIGHT = 0.05


def module_weights(model: nn.Module) -> list[float]:
    """w_n of every pool module, read from the static routers (every matrix of module n holds w_n)."""
    weights: dict[int, float] = {}
    for layer in routed_layers(model).values():
        for module_id, w in zip(layer.router.module_ids, layer.router.weight.tolist()):
            weights.setdefault(module_id, w)
    return [weights[n] for n in range(len(weights))]


def search_module_weights(
    model: nn.Module, tokenizer, examples: list[Example], batch_size: int, max_length: int, budget: int, seed: int,
) -> tuple[list[float], float, int]:
    """(best weights, their objective, tokens forwarded); the model is left holding the best weights."""
    device = next(model.parameters()).device
    batches = [collate([encode_for_training(tokenizer, e, max_length) for e in examples[i : i + batch_size]], tokenizer.pad_token_id, device)
               for i in range(0, len(examples), batch_size)]
    tokens = 0

    def objective(w: np.ndarray) -> float:
        nonlocal tokens
        set_module_weights(model, w.tolist())
        with torch.no_grad():
            losses = [model(**b).loss for b in batches]
        tokens += sum(int(b["attention_mask"].sum()) for b in batches)
        return torch.stack(losses).mean().item() + L1_WEIGHT * float(np.abs(w).mean())

    best = minimize_weights(objective, np.array(module_weights(model)), budget, seed)
    best_objective = objective(best)  # also leaves the model holding the best weights
    return best.tolist(), best_objective, tokens


def minimize_weights(objective: Callable[[np.ndarray], float], start: np.ndarray, budget: int, seed: int) -> np.ndarray:
    """LoRAHub's search: Nevergrad's NGOpt over w in [-BOUND, BOUND]^N from `start`, `budget` evaluations.
    For a few modules and small budgets NGOpt runs COBYLA (deterministic whatever the seed): its first N + 1
    evaluations are the start and +1 on each weight, and only then does it take smaller steps."""
    import nevergrad as ng  # here, not at the top: it takes seconds to import and only this search needs it

    if budget < len(start) + 2:
        warnings.warn(f"lorahub.search_budget={budget} for {len(start)} modules: expected at least {len(start) + 2} "
                      f"(COBYLA's first simplex takes {len(start) + 1}); the search never gets past that simplex", stacklevel=2)

    parametrization = ng.p.Array(init=np.clip(start, -BOUND, BOUND)).set_bounds(-BOUND, BOUND)
    parametrization.random_state = np.random.RandomState(seed % 2**32)
    optimizer = ng.optimizers.NGOpt(parametrization=parametrization, budget=budget)
    with warnings.catch_warnings():  # NGOpt's small-budget COBYLA warns about its own settings
        warnings.simplefilter("ignore", UserWarning)
        return optimizer.minimize(objective).value


class LoraHub(RoutedMethod):
    name = "lorahub"
    passes_per_token = 1  # the search only runs forward passes
    lr = None  # a gradient-free search: no learning rate
    config_sections = ("lorahub",)

    def router_kind(self, config: RunConfig) -> str:
        return "static"

    def train(self, model: nn.Module, tokenizer, examples: list[Example], batches: list[list[int]], config: RunConfig,
              seed: int) -> LocalWork:
        """No gradients: search the module weights on the examples the gradient methods would train on."""
        chosen = [examples[i] for i in dict.fromkeys(i for idx in batches for i in idx)]
        _, objective, tokens = search_module_weights(model, tokenizer, chosen, config.training.batch_size, config.training.max_length,
                                                     config.lorahub.search_budget, seed)
        return LocalWork(objective, tokens)
