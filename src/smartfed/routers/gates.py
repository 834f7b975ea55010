"""Gate functions: router logits and a quota k -> expert weights, zero outside each token's top-k.

The paper writes g = softmax(W_r x) with sparse top-k activation and does not say whether the kept
weights are renormalised or rescaled (SPEC section 1), so each reading is a choice:

- `softmax`:     softmax over the k kept logits (sums to 1: a convex mix of k rank-1 experts)
- `softmax-all`: softmax over all M logits, then keep the top-k, no renormalisation (the literal form)
- `scaled`:      k x the top-k softmax: the mean kept weight is 1, as every expert has inside its own module
- `sigmoid`:     an independent sigmoid per kept expert, in (0, 1)
"""

import torch


def _top(logits: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    return logits.topk(k, dim=-1)  # (..., k) values and indices


def softmax_topk(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Softmax over the k largest logits of each token, zero elsewhere.  (..., M) -> (..., M)"""
    if k >= logits.shape[-1]:
        return logits.softmax(dim=-1)
    top_logits, top_index = _top(logits, k)
    return torch.zeros_like(logits).scatter(-1, top_index, top_logits.softmax(dim=-1))


def softmax_all_topk(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Softmax over all M logits, the k largest kept as they are (they sum to at most 1)."""
    probs = logits.softmax(dim=-1)  # (..., M)
    if k >= logits.shape[-1]:
        return probs
    _, top_index = _top(logits, k)
    return torch.zeros_like(probs).scatter(-1, top_index, probs.gather(-1, top_index))


def scaled_softmax_topk(logits: torch.Tensor, k: int) -> torch.Tensor:
    """k x softmax over the top-k: the kept weights sum to k, their mean is 1."""
    return softmax_topk(logits, k) * min(k, logits.shape[-1])


def sigmoid_topk(logits: torch.Tensor, k: int) -> torch.Tensor:
    """sigmoid of each of the k largest logits, zero elsewhere."""
    if k >= logits.shape[-1]:
        return logits.sigmoid()
    top_logits, top_index = _top(logits, k)
    return torch.zeros_like(logits).scatter(-1, top_index, top_logits.sigmoid())


GATES = {"softmax": softmax_topk, "softmax-all": softmax_all_topk, "scaled": scaled_softmax_topk, "sigmoid": sigmoid_topk}
