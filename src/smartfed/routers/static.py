"""One weight per source module, shared by all its experts, the same for every token; no top-k.

y = W0 x + sum_n w_n * LoRA_n(x): linear arithmetic / LoRAHub-style mixing of whole modules.
With w one-hot on module n it is exactly module n's LoRA output, the pool's exactness check.
"""

import torch
from torch import nn

from smartfed.routers.base import Router


class StaticRouter(Router):
    uses_top_k = False

    def __init__(self, source: torch.Tensor):
        super().__init__()
        self.module_ids = tuple(dict.fromkeys(source.tolist()))  # pool module ids targeting this matrix
        local = torch.tensor([self.module_ids.index(s) for s in source.tolist()])
        self.register_buffer("expert_module", local, persistent=False)  # (M,) local module index
        self.weight = nn.Parameter(torch.full((len(self.module_ids),), 1.0 / len(self.module_ids)))  # (N_j,)

    def forward(self, x: torch.Tensor, z: torch.Tensor, top_k: int) -> torch.Tensor:
        return self.weight[self.expert_module]  # (M,), broadcast over tokens
