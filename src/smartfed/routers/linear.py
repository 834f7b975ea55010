"""The paper's router: logits = W_r x, W_r in R^{M x d_in}."""

import torch
import torch.nn.functional as F
from torch import nn

from smartfed.routers.base import Router


class LinearRouter(Router):
    reads_activations = False

    def __init__(self, d_in: int, num_experts: int, init_std: float = 0.01, **gate):
        super().__init__(**gate)
        self.weight = nn.Parameter(torch.randn(num_experts, d_in) * init_std)  # (M, d_in)

    def logits(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight)  # (..., d_in) -> (..., M)

    def init_arrow(self, expert_gain: torch.Tensor, A: torch.Tensor) -> None:
        """W_r = diag(gain) A: logit_i = gain_i (A_i x), Arrow's score with its sign kept (a linear map has no |.|)."""
        with torch.no_grad():
            self.weight.copy_(expert_gain[:, None] * A)  # (M, d_in)
