"""Methods that route the pool's experts: the model gets RoutedLinear layers, and routers are all a
client trains and sends."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

from smartfed.data import Example
from smartfed.experts import attach_experts, load_router_state_dict, router_state_dict
from smartfed.methods.base import LocalWork, Method
from smartfed.methods.training import train_steps
from smartfed.pool import ExpertPool

if TYPE_CHECKING:
    from smartfed.config import RunConfig


class RoutedMethod(Method):
    def router_kind(self, config: RunConfig) -> str:
        raise NotImplementedError

    def attach(self, model: nn.Module, pool: ExpertPool, config: RunConfig) -> nn.Module:
        router = config.router
        return attach_experts(model, pool, router=self.router_kind(config), top_k=router.top_k, init_std=router.init_std,
                              router_rank=router.rank, gate=router.gate, output_scale=router.output_scale, init=self.router_init(config), sparse=router.sparse,
                              **self.router_options(config))

    def router_init(self, config: RunConfig) -> str:
        return "random"  # whole-module routers (static, module) have no Arrow start

    def router_options(self, config: RunConfig) -> dict:
        return {}

    def trains(self, config: RunConfig) -> str:
        return self.router_kind(config)

    def state_dict(self, model: nn.Module) -> dict[str, torch.Tensor]:
        return router_state_dict(model)

    def load_state_dict(self, model: nn.Module, state: dict[str, torch.Tensor]) -> None:
        load_router_state_dict(model, state)

    def train(self, model: nn.Module, tokenizer, examples: list[Example], batches: list[list[int]], config: RunConfig,
              seed: int) -> LocalWork:
        importance = config.eeqa.importance if self.uses_eeqa(config) else None
        return train_steps(model, tokenizer, examples, batches, self.learning_rate(config), config.training.max_length, seed, importance)
