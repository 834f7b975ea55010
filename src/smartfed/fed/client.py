"""Client side of a round: train only the routers on private data, starting from the global state.

`client_update` is the one implementation; the simulator and the Flower ClientApp both call it. Its
result depends only on its arguments: the workspace model's routers are overwritten from
`global_state` first, and the batches and dropout come from `seed`.
"""

from dataclasses import dataclass

import torch

from smartfed.data import Example
from smartfed.eval.generate import collate, encode_for_training
from smartfed.experts import load_router_state_dict, router_parameters, router_state_dict, set_quotas
from smartfed.quota.importance import read_importance, record_gradients, start_importance


@dataclass(frozen=True)
class LocalTraining:
    steps: int
    batch_size: int
    lr: float
    max_length: int
    importance: str | None = None  # EEQA: measure matrix importance ("relative_norm" | "grad_norm")


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
    """Train the routers of `model` (experts attached) for `training.steps` steps on `examples`."""
    if not examples:
        raise ValueError("client has no training examples")
    load_router_state_dict(model, global_state)
    set_quotas(model, quotas)
    params = router_parameters(model)
    optimizer = torch.optim.AdamW(params, lr=training.lr, weight_decay=0.0)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model.train()
    if training.importance:
        start_importance(model, training.importance)
    losses = []
    order = torch.randperm(len(examples), generator=generator).tolist()
    for step in range(training.steps):
        idx = [order[(step * training.batch_size + j) % len(order)] for j in range(training.batch_size)]
        batch = collate([encode_for_training(tokenizer, examples[i], training.max_length) for i in idx], tokenizer.pad_token_id)
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
    return ClientResult(router_state_dict(model), len(examples), {"train_loss": train_loss}, importance)
