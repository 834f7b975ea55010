"""LoRAHub (Huang et al. 2024): a static mix of whole pool modules, y = W0 x + sum_n w_n LoRA_n(x),
with the weights w found gradient-free on a few of the client's examples.

As in LoRAHub's code: Nevergrad's NGOpt over w in [-1.5, 1.5]^N, minimising the cross-entropy on
the examples plus 0.05 * mean |w|. Federated: each client starts its search from the global weights
and the server averages the weights the clients found (example-weighted), like any other state.
"""

import warnings

import nevergrad as ng
import numpy as np
import torch
from torch import nn

from smartfed.data import Example
from smartfed.eval.generate import collate, encode_for_training
from smartfed.experts import routed_layers, set_module_weights

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
    batches = [collate([encode_for_training(tokenizer, e, max_length) for e in examples[i : i + batch_size]], tokenizer.pad_token_id)
               for i in range(0, len(examples), batch_size)]
    tokens = 0

    def objective(w: np.ndarray) -> float:
        nonlocal tokens
        set_module_weights(model, w.tolist())
        with torch.no_grad():
            losses = [model(**b).loss for b in batches]
        tokens += sum(int(b["attention_mask"].sum()) for b in batches)
        return torch.stack(losses).mean().item() + L1_WEIGHT * float(np.abs(w).mean())

    start = np.clip(np.array(module_weights(model)), -BOUND, BOUND)
    parametrization = ng.p.Array(init=start).set_bounds(-BOUND, BOUND)
    parametrization.random_state = np.random.RandomState(seed % 2**32)
    optimizer = ng.optimizers.NGOpt(parametrization=parametrization, budget=budget)
    with warnings.catch_warnings():  # NGOpt's small-budget COBYLA warns about its own settings
        warnings.simplefilter("ignore", UserWarning)
        best = optimizer.minimize(objective).value
    best_objective = objective(best)  # also leaves the model holding the best weights
    return best.tolist(), best_objective, tokens
