"""Router kinds, by the name used in configs and on the command line."""

import torch
from torch import nn

from smartfed.pool.expert_pool import MatrixExperts
from smartfed.routers.activation import ActivationRouter
from smartfed.routers.arrow import ArrowRouter
from smartfed.routers.base import Router, can_init_arrow, topk_softmax
from smartfed.routers.gates import GATES
from smartfed.routers.linear import LinearRouter
from smartfed.routers.lowrank import LowRankRouter
from smartfed.routers.module import ModuleRouter
from smartfed.routers.module_arrow import ModuleArrowRouter
from smartfed.routers.static import StaticRouter

ROUTER_CLASSES: dict[str, type[Router]] = {
    "linear": LinearRouter, "activation": ActivationRouter, "lowrank": LowRankRouter, "arrow": ArrowRouter, "static": StaticRouter,
    "module": ModuleRouter, "module-arrow": ModuleArrowRouter,
}
ROUTER_INITS = ("random", "arrow")
ROUTER_KINDS = tuple(ROUTER_CLASSES)


def uses_top_k(kind: str) -> bool:
    """Whether routers of this kind keep only the top-k experts per token (so per-matrix quotas mean something)."""
    return ROUTER_CLASSES[kind].uses_top_k


def expert_gain(experts: MatrixExperts) -> torch.Tensor:
    """||B_i|| s_i of every expert: how much a unit activation of expert i moves the output.  (M,)"""
    return experts.B.float().norm(dim=0) * experts.scale.float().to(experts.B.device)


def build_router(kind: str, experts: MatrixExperts, init_std: float = 0.01, rank: int = 4, gate: str = "softmax",
                 output_scale: bool = False, init: str = "random", module_top_k: int = 3, temperature: float = 1.0) -> Router:
    """Make the router of one adapted matrix. `rank` is used by `lowrank` only, `module_top_k` and
    `temperature` by `module-arrow` only; `init="arrow"` starts a router at Arrow's zero-shot choice
    where its form can express it (`can_init_arrow`)."""
    M, d_in, gating = experts.num_experts, experts.d_in, {"gate": gate, "output_scale": output_scale}
    if kind not in ROUTER_CLASSES:
        raise ValueError(f"router kind expected one of {ROUTER_KINDS}, found {kind!r}")
    if init not in ROUTER_INITS or (init == "arrow" and not can_init_arrow(ROUTER_CLASSES[kind])):
        raise ValueError(f"router init expected one of {ROUTER_INITS} ('arrow' for {', '.join(arrow_initialisable())}), "
                         f"found {init!r} for {kind!r}")
    router = {
        "linear": lambda: LinearRouter(d_in, M, init_std, **gating),
        "activation": lambda: ActivationRouter(M, init_std, **gating),
        "lowrank": lambda: LowRankRouter(d_in, M, rank, init_std, **gating),
        "arrow": lambda: ArrowRouter(expert_gain(experts), **gating),
        "static": lambda: StaticRouter(experts.source),
        "module": lambda: ModuleRouter(d_in, experts.source, init_std),
        "module-arrow": lambda: ModuleArrowRouter(experts.A.float(), experts.B.float(), experts.source, module_top_k, temperature),
    }[kind]()
    if init == "arrow":
        router.init_arrow(expert_gain(experts), experts.A.float())
    return router


def arrow_initialisable() -> tuple[str, ...]:
    return tuple(kind for kind, cls in ROUTER_CLASSES.items() if can_init_arrow(cls))


def num_router_parameters(router: nn.Module) -> int:
    return sum(p.numel() for p in router.parameters())


__all__ = [
    "GATES",
    "ROUTER_INITS",
    "ROUTER_KINDS",
    "ActivationRouter",
    "ArrowRouter",
    "arrow_initialisable",
    "expert_gain",
    "LinearRouter",
    "LowRankRouter",
    "ModuleArrowRouter",
    "ModuleRouter",
    "Router",
    "StaticRouter",
    "build_router",
    "num_router_parameters",
    "topk_softmax",
    "uses_top_k",
]
