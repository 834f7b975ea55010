"""Arrow over whole modules (Ostapenko et al. 2024), training-free: the `arrow` baseline's router.

Each module n targeting this matrix has a prototype v_n, the top right singular vector of its B_n A_n;
a token x scores |x . v_n| against each, keeps the top-k modules, and mixes them with a softmax over
the kept scores divided by a temperature. Every expert of module n gets module n's coefficient, so a
module enters whole, as in peft's `create_arrow_model` (tested equal to it). Nothing is trained.
"""

import torch

from smartfed.routers.base import Router


def top_right_singular_vectors(A: torch.Tensor, B: torch.Tensor, source: torch.Tensor, module_ids: tuple[int, ...]) -> torch.Tensor:
    """v_n of B_n A_n for each module, exactly, in the r_n-dimensional space: B A = Q_B (R_B R_A^T) Q_A^T.  (N_j, d_in)"""
    prototypes = []
    for n in module_ids:
        mine = source == n
        q_a, r_a = torch.linalg.qr(A[mine].double().T)  # (d_in, r), (r, r)
        _, r_b = torch.linalg.qr(B[:, mine].double())  # (r, r)
        _, _, vh = torch.linalg.svd(r_b @ r_a.T)  # the top right singular vector of R_B R_A^T
        prototypes.append((q_a @ vh[0]).float())  # (d_in,)
    return torch.stack(prototypes)


class ModuleArrowRouter(Router):
    uses_top_k = False  # its top-k is over whole modules, not the per-matrix expert quota

    def __init__(self, A: torch.Tensor, B: torch.Tensor, source: torch.Tensor, top_k: int = 3, temperature: float = 1.0):
        super().__init__()
        self.module_ids = tuple(dict.fromkeys(source.tolist()))  # pool module ids targeting this matrix
        local = torch.tensor([self.module_ids.index(s) for s in source.tolist()])
        self.register_buffer("expert_module", local, persistent=False)  # (M,) local module index
        self.register_buffer("prototypes", top_right_singular_vectors(A, B, source, self.module_ids), persistent=False)  # (N_j, d_in)
        self.top_k, self.temperature = min(top_k, len(self.module_ids)), temperature

    def forward(self, x: torch.Tensor, z: torch.Tensor, top_k: int) -> torch.Tensor:
        sim = (x @ self.prototypes.T).abs()  # (..., N_j)
        top_values, top_index = sim.topk(self.top_k, dim=-1)  # (..., k)
        kept = torch.full_like(sim, float("-inf")).scatter(-1, top_index, top_values)
        coeff = (kept / self.temperature).softmax(dim=-1)  # (..., N_j)
        return coeff[..., self.expert_module]  # (..., M) every expert of module n gets coeff_n
