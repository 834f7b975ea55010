"""The paper's router: logits = W_r x, W_r in R^{M x d_in}."""

import torch
import torch.nn.functional as F
from torch import nn

from smartfed.routers.base import Router


class LinearRouter(Router):
    def __init__(self, d_in: int, num_experts: int, init_std: float = 0.01):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_experts, d_in) * init_std)  # (M, d_in)

    def logits(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)  # (..., d_in) -> (..., M)
