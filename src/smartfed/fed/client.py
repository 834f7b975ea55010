"""Client side of a round: train (or search) what the method trains on private data, starting from
the global state.

`client_update` is the one implementation; the simulator and the Flower ClientApp both call it. Its
result depends only on its arguments: the model's trainable state is overwritten from
`global_state` first, and the batches and dropout come from `seed`. Its metrics carry the CPU
seconds and tokens it spent, for the energy model (smartfed.metrics.energy).
"""

import hashlib
import time
from dataclasses import dataclass

import torch
from torch import nn

from smartfed.config import RunConfig
from smartfed.data import Example
from smartfed.experts import set_quotas
from smartfed.methods import get_method


@dataclass(frozen=True)
class ClientResult:
    state: dict[str, torch.Tensor]
    num_examples: int
    metrics: dict[str, float]  # train_loss, cpu_s, tokens
    importance: dict[str, float] | None = None  # matrix -> score, uploaded with the state


def client_seed(config: RunConfig, round_: int, client: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{config.run.seed}/{round_}/{client}".encode()).digest()[:4], "big")


def batch_indices(num_examples: int, steps: int, batch_size: int, seed: int) -> list[list[int]]:
    """The examples of each local step: one seeded permutation, cycled if the client has few examples."""
    order = torch.randperm(num_examples, generator=torch.Generator().manual_seed(seed)).tolist()
    return [[order[(step * batch_size + j) % num_examples] for j in range(batch_size)] for step in range(steps)]


def client_update(config: RunConfig, model: nn.Module, tokenizer, global_state: dict[str, torch.Tensor], quotas: dict[str, int],
                  examples: list[Example], seed: int) -> ClientResult:
    """One client's local round of `config.run.method` on `examples`, from `global_state` with `quotas`."""
    if not examples:
        raise ValueError("client has no training examples")
    cpu_began = time.process_time()
    method = get_method(config.run.method)
    method.load_state_dict(model, global_state)
    set_quotas(model, quotas)
    batches = batch_indices(len(examples), config.training.local_steps, config.training.batch_size, seed)
    work = method.train(model, tokenizer, examples, batches, config, seed)
    metrics = {"train_loss": work.train_loss, "cpu_s": time.process_time() - cpu_began, "tokens": work.tokens}
    return ClientResult(method.state_dict(model), len(examples), metrics, work.importance)
