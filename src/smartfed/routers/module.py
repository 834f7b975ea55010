"""A learned gate over whole pool modules (MoLE / X-LoRA style): the `module-router` baseline.

gate_n(x) = softmax_n(W x), W in R^{N_j x d_in}, one weight per source module per token, shared by
all of that module's rank-1 experts: the module is mixed as a whole, never split along its rank.
Dense over modules (no top-k), as in MoLE's gating function.
"""

import torch
import torch.nn.functional as F
from torch import nn

from smartfed.routers.base import Router


class ModuleRouter(Router):
    uses_top_k = False

    def __init__(self, d_in: int, source: torch.Tensor, init_std: float = 0.01):
        super().__init__()
        self.module_ids = tuple(dict.fromkeys(source.tolist()))  # pool module ids targeting this matrix
        local = torch.tensor([self.module_ids.index(s) for s in source.tolist()])
        self.register_buffer("expert_module", local, persistent=False)  # (M,) local module index
        self.weight = nn.Parameter(torch.randn(len(self.module_ids), d_in) * init_std)  # (N_j, d_in)

    def forward(self, x: torch.Tensor, z: torch.Tensor, top_k: int) -> torch.Tensor:
        gate = F.linear(x, self.weight).softmax(dim=-1)  # (..., N_j)
        return gate[..., self.expert_module]  # (..., M) every expert of module n gets gate_n
