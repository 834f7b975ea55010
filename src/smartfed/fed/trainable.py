"""What a client trains and sends, for every method: the routers of a model with pool experts
attached (smartfed, module-router, lorahub, local), or the trainable LoRA weights of a fresh PEFT
LoRA (fedit: A and B; ffa-lora: B only). The server loop only ever sees these state dicts."""

from collections.abc import Mapping

import torch
from torch import nn

from smartfed.experts import load_router_state_dict, routed_layers, router_state_dict
from smartfed.experts.attach import copy_into


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def _named_trainable(model: nn.Module) -> dict[str, nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def trainable_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """Detached copies of what the client trained, keyed as the server aggregates them."""
    if routed_layers(model):
        return router_state_dict(model)
    return {name: p.detach().clone() for name, p in _named_trainable(model).items()}


def load_trainable_state(model: nn.Module, state: Mapping[str, torch.Tensor]) -> None:
    """Copy a state in; any missing or unexpected key, or a wrong shape or dtype, is an error."""
    if routed_layers(model):
        return load_router_state_dict(model, state)
    copy_into(_named_trainable(model), state, "trainable state")
