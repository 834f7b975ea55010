"""FedIT and FFA-LoRA: every client trains a fresh PEFT LoRA on the pool's target matrices.

FedIT (Zhang et al. 2024): LoRA A and B trained, the server averages both (example-weighted).
FFA-LoRA (Sun et al. 2024): A frozen at its random init (the same on every client, from the run's
seed), only B trained and averaged, so the average of the clients' B A products is exact.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

from smartfed.data import Example
from smartfed.experts.attach import copy_into
from smartfed.methods.base import LocalWork, Method
from smartfed.methods.training import train_steps
from smartfed.pool.expert_pool import ExpertPool

if TYPE_CHECKING:
    from smartfed.config import RunConfig


def pool_target_types(pool: ExpertPool) -> list[str]:
    """The matrix types the pool adapts (q_proj, ...): a fresh LoRA gets the same targets."""
    return sorted({name.rsplit(".", 1)[-1] for name in pool.matrices})


def attach_fresh_lora(model: nn.Module, targets: list[str], rank: int, alpha: float, freeze_a: bool) -> PeftModel:
    """Wrap `model` in a new PEFT LoRA (A random, B zero: the base model's output is unchanged)."""
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, lora_dropout=0.0, bias="none")
    peft_model = get_peft_model(model, config)
    if freeze_a:
        for name, p in peft_model.named_parameters():
            if ".lora_A." in name:
                p.requires_grad_(False)
    return peft_model


def _trainable(model: nn.Module) -> dict[str, nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


class FreshLora(Method):
    """A new LoRA on the pool's target matrix types; its trainable weights are what a client sends."""

    ships_pool = False
    freeze_a = False
    config_sections = ("lora",)

    def attach(self, model: nn.Module, pool: ExpertPool, config: RunConfig) -> nn.Module:
        return attach_fresh_lora(model, pool_target_types(pool), config.lora.rank, config.lora.alpha, self.freeze_a)

    def trains(self, config: RunConfig) -> str:
        return f"LoRA r{config.lora.rank}" + (" (B only)" if self.freeze_a else "")

    def state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        return {name: p.detach().to("cpu", copy=True) for name, p in _trainable(model).items()}

    def load_state_dict(self, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
        copy_into(_trainable(model), state, "trainable state")

    def train(self, model: nn.Module, tokenizer, examples: list[Example], batches: list[list[int]], config: RunConfig,
              seed: int) -> LocalWork:
        return train_steps(model, tokenizer, examples, batches, self.learning_rate(config), config.training.max_length, seed)
