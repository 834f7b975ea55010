"""A linear layer plus a routed mixture of frozen rank-1 experts.

    y = W0 x + sum_{i in topk(x)} w_i * scale_i * B[:, i] * (A[i, :] @ x)

computed for all M experts at once: one matmul into the stacked A, a gate, one matmul out of the
stacked B, added onto W0 x. No loop over experts and no host sync in forward; `top_k` is
a plain int attribute, so quotas change between rounds without rebuilding anything.
"""

import torch
import torch.nn.functional as F
from torch import nn

from smartfed.pool.expert_pool import MatrixExperts
from smartfed.routers.base import Router


def compute_dtype(base_layer: nn.Module) -> torch.dtype:
    """The dtype a layer computes in: its weight's, or for a quantised (4/8-bit) layer its compute dtype."""
    dtype = base_layer.weight.dtype
    return dtype if dtype.is_floating_point else getattr(base_layer, "compute_dtype", None) or torch.bfloat16


# `router.sparse = "auto"` gathers the kept experts where M >= 128 k: where bench/sparse_crossover.py measured the
# sparse path faster on 2 CPU cores (one layer, d = 576, 1,024 tokens; README): M = 128 at k = 1, M = 512 at k <= 4.
SPARSE_EXPERTS_PER_KEPT = 128


class RoutedLinear(nn.Module):
    def __init__(self, base_layer: nn.Module, experts: MatrixExperts, router: Router, top_k: int, sparse: bool | str = False):
        super().__init__()
        self.base_layer = base_layer
        place = {"device": base_layer.weight.device, "dtype": compute_dtype(base_layer)}
        # Frozen experts are buffers, not parameters; non-persistent so they stay out of the model's
        # state dict (they live in the pool file, shared). They follow the base layer's device and
        # dtype (`.to` is a no-op for an fp32 CPU model, which keeps sharing the memory-mapped pool).
        self.register_buffer("A", experts.A.to(**place), persistent=False)  # (M, d_in)
        # The frozen per-expert scale folded into B once, at attach (one multiply less per token); this is a
        # copy per process, where A stays a view of the memory-mapped pool for an fp32 CPU model.
        self.register_buffer("scaled_B", (experts.B * experts.scale).to(**place), persistent=False)  # (d_out, M)
        # B^T B in fp32, for the norm of the routed update (EEQA's importance) without forming the update.
        self.register_buffer("gram", self.scaled_B.float().T @ self.scaled_B.float(), persistent=False)  # (M, M)
        # Routers keep fp32 weights on the base layer's device (as peft keeps adapters in fp32): they
        # see x and z in fp32 and their gate is cast back to the base dtype for the mix.
        self.router = router.to(device=place["device"])
        self.num_experts = experts.num_experts
        self.top_k = top_k
        # Compute only the k kept experts per token (gathering their A rows and B columns) where the router
        # needs no expert activations: always, never, or "auto", where k is small enough against M (an EEQA quota
        # changes k between rounds, so auto decides at each forward).
        self.sparse = sparse if not router.reads_activations else False
        # EEQA importance (smartfed.quota.importance): a running sum, read once per local training.
        self.track_importance = False
        self.token_mask: torch.Tensor | None = None  # (batch, seq) real tokens, set while importance is measured
        self.register_buffer("importance_sum", torch.zeros((), dtype=torch.float32, device=place["device"]), persistent=False)
        self.register_buffer("importance_count", torch.zeros((), dtype=torch.float32, device=place["device"]), persistent=False)

    def computes_only_kept_experts(self) -> bool:
        if self.sparse == "auto":
            return self.num_experts >= SPARSE_EXPERTS_PER_KEPT * self.top_k
        return bool(self.sparse) and self.top_k < self.num_experts

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.base_layer(x)  # (..., d_out)
        if self.computes_only_kept_experts():
            delta = self._sparse_delta(x)  # (..., d_out)
            if self.track_importance:
                self._measure(y, torch.linalg.vector_norm(delta.detach(), dim=-1, dtype=torch.float32))
            return y + delta
        mixed = self._mixed(x)  # (..., M)
        if self.track_importance:
            self._measure(y, self._update_norm(mixed))
        # (`.to` is a no-op unless a quantised base layer returns another dtype than its input's; one addmm
        # instead of the add measured no faster and no smaller in bench/train_step.py, so the plain form stays)
        return y + F.linear(mixed.to(y.dtype), self.scaled_B.to(y.dtype))  # (..., d_out)

    def _mixed(self, x: torch.Tensor) -> torch.Tensor:
        z = F.linear(x, self.A)  # (..., M)   every expert's A[i] @ x in one matmul
        gate = self.router(x.float(), z.float(), self.top_k).to(z.dtype)  # (..., M) or (M,), zero outside the top-k
        return z * gate  # (..., M)

    def _sparse_delta(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.router(x.float(), None, self.top_k)  # (..., M), zero outside the top-k
        weight, index = gate.topk(self.top_k, dim=-1)  # (..., k)
        z = torch.einsum("...d,...kd->...k", x, self.A[index])  # (..., k)  only the kept experts' A[i] @ x
        return torch.einsum("...k,...ko->...o", z * weight.to(z.dtype), self.scaled_B.T[index])  # (..., d_out)

    @torch.no_grad()
    def _update_norm(self, mixed: torch.Tensor) -> torch.Tensor:
        """||B m|| per token in fp32 without forming B m: ||B m||^2 = m^T (B^T B) m.  (..., M) -> (...,)"""
        m = mixed.float()
        return ((m @ self.gram.float()) * m).sum(-1).clamp_min(0).sqrt()

    @torch.no_grad()
    def _measure(self, y: torch.Tensor, update_norm: torch.Tensor) -> None:
        """EEQA importance: ||routed update|| / ||W0 x|| per real token, summed; no host sync."""
        ratio = update_norm / torch.linalg.vector_norm(y, dim=-1, dtype=torch.float32).clamp_min(1e-6)  # (...,)
        real = self.token_mask if self.token_mask is not None and self.token_mask.shape == ratio.shape else torch.ones_like(ratio)
        self.importance_sum += (ratio * real).sum()
        self.importance_count += real.sum()

    def extra_repr(self) -> str:
        return f"num_experts={self.num_experts}, top_k={self.top_k}"
