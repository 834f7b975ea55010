"""What every router does: turn a token x and its expert activations z = A x into gate weights."""

import torch
from torch import nn


def topk_softmax(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Softmax over the k largest logits of each token, zero elsewhere.  (..., M) -> (..., M)"""
    if k >= logits.shape[-1]:
        return logits.softmax(dim=-1)
    top_logits, top_index = logits.topk(k, dim=-1)  # (..., k)
    return torch.zeros_like(logits).scatter(-1, top_index, top_logits.softmax(dim=-1))


class Router(nn.Module):
    """Base class. `forward(x, z, top_k)` returns gate weights broadcastable to z's shape (..., M)."""

    uses_top_k = True

    def forward(self, x: torch.Tensor, z: torch.Tensor, top_k: int) -> torch.Tensor:
        return topk_softmax(self.logits(x, z), top_k)

    def logits(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:  # (..., d_in), (..., M) -> (..., M)
        raise NotImplementedError
