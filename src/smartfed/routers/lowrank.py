"""A low-rank factorisation of the paper's router: logits = U (V x), V in R^{q x d_in}, U in R^{M x q}.

U starts at zero (every token gets the uniform mix over its top-k), V at a small random value so
that U receives a gradient from the first step.
"""

import torch
import torch.nn.functional as F
from torch import nn

from smartfed.routers.base import Router


class LowRankRouter(Router):
    reads_activations = False

    def __init__(self, d_in: int, num_experts: int, rank: int = 4, init_std: float = 0.01, **gate):
        super().__init__(**gate)
        self.down = nn.Parameter(torch.randn(rank, d_in) / d_in**0.5)  # (q, d_in)
        self.up = nn.Parameter(torch.randn(num_experts, rank) * init_std)  # (M, q)

    def logits(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return F.linear(F.linear(x, self.down), self.up)  # (..., d_in) -> (..., q) -> (..., M)
