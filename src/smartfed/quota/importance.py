"""How much each adapted matrix matters, measured on the client during local training at no extra
forward pass (SPEC section 2).

relative_norm (default): mean over real (non-padding) tokens of ||routed update|| / ||W0 x||, accumulated inside the
    routed layer's forward (no host sync; read once at the end of local training).
grad_norm: mean over steps of the norm of the gradient of the matrix's router parameters, read
    after each backward.
"""

from contextlib import contextmanager

import torch
from torch import nn

from smartfed.experts import routed_layers

IMPORTANCE_KINDS = ("relative_norm", "grad_norm")


def start_importance(model: nn.Module, kind: str) -> None:
    if kind not in IMPORTANCE_KINDS:
        raise ValueError(f"importance expected one of {IMPORTANCE_KINDS}, found {kind!r}")
    for layer in routed_layers(model).values():
        layer.track_importance = kind == "relative_norm"
        layer.importance_sum.zero_()
        layer.importance_count.zero_()


@contextmanager
def real_tokens(model: nn.Module, attention_mask: torch.Tensor):
    """While a batch's forward runs: relative_norm importance averages over its real tokens only, not its padding."""
    layers = routed_layers(model).values()
    mask = attention_mask.to(dtype=torch.float32)
    for layer in layers:
        layer.token_mask = mask
    try:
        yield
    finally:
        for layer in layers:
            layer.token_mask = None


@contextmanager
def not_measuring(model: nn.Module):
    """During backward: gradient checkpointing runs the layers' forward again, which must not count twice."""
    layers = [layer for layer in routed_layers(model).values() if layer.track_importance]
    for layer in layers:
        layer.track_importance = False
    try:
        yield
    finally:
        for layer in layers:
            layer.track_importance = True


def record_gradients(model: nn.Module) -> None:
    """grad_norm: call after each backward."""
    with torch.no_grad():
        for layer in routed_layers(model).values():
            grads = [p.grad.pow(2).sum() for p in layer.router.parameters() if p.grad is not None]
            if grads:
                layer.importance_sum += torch.stack(grads).sum().sqrt()
                layer.importance_count += 1


def read_importance(model: nn.Module) -> dict[str, float]:
    """Stop measuring and return matrix -> score (one host sync for all matrices)."""
    layers = routed_layers(model)
    for layer in layers.values():
        layer.track_importance = False
    values = torch.stack([layer.importance_sum / layer.importance_count.clamp_min(1) for layer in layers.values()]).tolist()
    return dict(zip(layers, values))
