"""Arrow's zero-shot scores with a learned weight per expert: the `arrow` router kind.

Arrow (Ostapenko et al. 2024) routes a token by |x . prototype| of each module; at rank-1
granularity an expert's prototype is its own A row, so its score is |A_i x| ||B_i|| s_i, computed
from the activations z = A x the layer has anyway. logits_i = w_i * score_i with w starting at 1:
round 0 is Arrow's zero-shot choice, and the router costs M parameters per matrix.
"""

import torch
from torch import nn

from smartfed.routers.base import Router


class ArrowRouter(Router):
    def __init__(self, expert_gain: torch.Tensor, **gate):
        super().__init__(**gate)
        self.register_buffer("expert_gain", expert_gain.detach().clone().float(), persistent=False)  # (M,) ||B_i|| s_i
        self.weight = nn.Parameter(torch.ones_like(self.expert_gain))  # (M,)

    def logits(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return z.abs() * (self.expert_gain * self.weight)  # (..., M)

    def init_arrow(self, expert_gain: torch.Tensor, A: torch.Tensor) -> None:
        with torch.no_grad():
            self.weight.fill_(1.0)
