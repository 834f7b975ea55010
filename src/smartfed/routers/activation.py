"""Our parameter-efficient router: logits computed from the experts' own activations.

logits = W z + b with z = A x the (M,) activations the layer computes anyway, W in R^{M x M}.
It costs M^2 + M parameters per matrix instead of M * d_in (1,056 vs 18,432 for M=32, d_in=576),
adds no matmul over d_in, and lets each expert's gate depend on how strongly the token excites
every expert of the pool, the signal the experts themselves were trained to produce.
"""

import torch
import torch.nn.functional as F
from torch import nn

from smartfed.routers.base import Router


class ActivationRouter(Router):
    def __init__(self, num_experts: int, init_std: float = 0.01, **gate):
        super().__init__(**gate)
        self.weight = nn.Parameter(torch.randn(num_experts, num_experts) * init_std)  # (M, M)
        self.bias = nn.Parameter(torch.zeros(num_experts))  # (M,)

    def logits(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return F.linear(z, self.weight, self.bias)  # (..., M) -> (..., M)

    def init_arrow(self, expert_gain: torch.Tensor, A: torch.Tensor) -> None:
        """W = diag(gain), b = 0: logit_i = gain_i z_i, Arrow's score with its sign kept."""
        with torch.no_grad():
            self.weight.copy_(torch.diag(expert_gain))
            self.bias.zero_()
