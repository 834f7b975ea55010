"""The local training every gradient method shares: AdamW on the trainable parameters, one step per
batch, EEQA importance measured along the way when asked (no extra forward pass)."""

import torch
from torch import nn

from smartfed.data import Example
from smartfed.data.tokenize import collate, encode_for_training
from smartfed.methods.base import LocalWork
from smartfed.quota.importance import not_measuring, read_importance, real_tokens, record_gradients, start_importance


def train_steps(model: nn.Module, tokenizer, examples: list[Example], batches: list[list[int]], lr: float, max_length: int,
                seed: int, importance: str | None = None) -> LocalWork:
    """len(batches) AdamW steps; `importance` ("relative_norm" | "grad_norm") also measures EEQA scores."""
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    torch.manual_seed(seed)
    model.train()
    if importance:
        start_importance(model, importance)
    losses, tokens, device = [], 0, next(model.parameters()).device
    for idx in batches:
        batch = collate([encode_for_training(tokenizer, examples[i], max_length) for i in idx], tokenizer.pad_token_id, device)
        tokens += int(batch["attention_mask"].sum())
        with real_tokens(model, batch["attention_mask"]):
            loss = model(**batch).loss
        with not_measuring(model):
            loss.backward()
        if importance == "grad_norm":
            record_gradients(model)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach())
    model.eval()
    scores = read_importance(model) if importance else None
    return LocalWork(torch.stack(losses).mean().item(), tokens, scores)  # one sync, at the end
