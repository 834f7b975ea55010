"""Client side of a round: train what the method trains (routers, or a fresh LoRA) on private data,
starting from the global state.

`client_update` is the one implementation; the simulator and the Flower ClientApp both call it. Its
result depends only on its arguments: the workspace model's trainable state is overwritten from
`global_state` first, and the batches and dropout come from `seed`. Its metrics carry the CPU
seconds and tokens it spent, for the energy model (smartfed.metrics.energy).
"""

import time
from dataclasses import dataclass

import torch

from smartfed.baselines import search_module_weights
from smartfed.data import Example
from smartfed.eval.generate import collate, encode_for_training
from smartfed.experts import set_quotas
from smartfed.fed.trainable import load_trainable_state, trainable_parameters, trainable_state_dict
from smartfed.quota.importance import read_importance, record_gradients, start_importance


@dataclass(frozen=True)
class LocalTraining:
    steps: int
    batch_size: int
    lr: float
    max_length: int
    importance: str | None = None  # EEQA: measure matrix importance ("relative_norm" | "grad_norm")
    search_budget: int = 0  # > 0: no gradients, a LoRAHub search of this many loss evaluations


@dataclass(frozen=True)
class ClientResult:
    state: dict[str, torch.Tensor]
    num_examples: int
    metrics: dict[str, float]
    importance: dict[str, float] | None = None  # matrix -> score, uploaded with the router


def client_update(
    model, tokenizer, global_state: dict[str, torch.Tensor], quotas: dict[str, int], examples: list[Example],
    training: LocalTraining, seed: int,
) -> ClientResult:
    """Train `model`'s trainable state for `training.steps` steps on `examples` (or search it)."""
    if not examples:
        raise ValueError("client has no training examples")
    cpu_began = time.process_time()
    load_trainable_state(model, global_state)
    set_quotas(model, quotas)
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(examples), generator=generator).tolist()
    batch_indices = [[order[(step * training.batch_size + j) % len(order)] for j in range(training.batch_size)]
                     for step in range(training.steps)]
    if training.search_budget:
        chosen = [examples[i] for i in dict.fromkeys(i for idx in batch_indices for i in idx)]
        _, objective, tokens = search_module_weights(model, tokenizer, chosen, training.batch_size, training.max_length,
                                                     training.search_budget, seed)
        metrics = {"train_loss": objective, "cpu_s": time.process_time() - cpu_began, "tokens": tokens}
        return ClientResult(trainable_state_dict(model), len(examples), metrics)
    params = trainable_parameters(model)
    optimizer = torch.optim.AdamW(params, lr=training.lr, weight_decay=0.0)
    torch.manual_seed(seed)
    model.train()
    if training.importance:
        start_importance(model, training.importance)
    losses, tokens = [], 0
    for idx in batch_indices:
        batch = collate([encode_for_training(tokenizer, examples[i], training.max_length) for i in idx], tokenizer.pad_token_id)
        tokens += int(batch["attention_mask"].sum())
        loss = model(**batch).loss
        loss.backward()
        if training.importance == "grad_norm":
            record_gradients(model)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach())
    model.eval()
    importance = read_importance(model) if training.importance else None
    train_loss = torch.stack(losses).mean().item()  # one sync, at the end
    metrics = {"train_loss": train_loss, "cpu_s": time.process_time() - cpu_began, "tokens": tokens}
    return ClientResult(trainable_state_dict(model), len(examples), metrics, importance)
