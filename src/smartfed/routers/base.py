"""What every router does: turn a token x and its expert activations z = A x into gate weights."""

import torch
from torch import nn

from smartfed.routers.gates import GATES, softmax_topk

topk_softmax = softmax_topk  # the default gate, under the name the routers and benches have used


class Router(nn.Module):
    """Base class. `forward(x, z, top_k)` returns gate weights broadcastable to z's shape (..., M).

    `gate` names the function from logits to weights (routers/gates.py); `output_scale` adds one
    learned scalar per matrix, starting at 1, that multiplies every weight (it is sent like any
    router parameter).
    """

    uses_top_k = True
    reads_activations = True  # False: logits from x alone, so the layer may compute only the k kept experts

    def __init__(self, gate: str = "softmax", output_scale: bool = False):
        super().__init__()
        if gate not in GATES:
            raise ValueError(f"gate expected one of {', '.join(GATES)}, found {gate!r}")
        self.gate = gate
        self.output_scale = nn.Parameter(torch.ones(())) if output_scale else None

    def forward(self, x: torch.Tensor, z: torch.Tensor, top_k: int) -> torch.Tensor:
        gate = GATES[self.gate](self.logits(x, z), top_k)  # (..., M)
        return gate * self.output_scale if self.output_scale is not None else gate

    def logits(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:  # (..., d_in), (..., M) -> (..., M)
        raise NotImplementedError

    def init_arrow(self, expert_gain: torch.Tensor, A: torch.Tensor) -> None:
        """Start at Arrow's zero-shot choice (score_i = |A_i x| * gain_i, gain_i = ||B_i|| s_i) where the
        router's form can express it; routers that cannot leave this unimplemented."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"gate={self.gate}" + (", output_scale" if self.output_scale is not None else "")


def can_init_arrow(cls: type[Router]) -> bool:
    return cls.init_arrow is not Router.init_arrow
