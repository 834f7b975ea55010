"""Router kinds, by the name used in configs and on the command line."""

from torch import nn

from smartfed.pool.expert_pool import MatrixExperts
from smartfed.routers.activation import ActivationRouter
from smartfed.routers.base import Router, topk_softmax
from smartfed.routers.linear import LinearRouter
from smartfed.routers.lowrank import LowRankRouter
from smartfed.routers.module import ModuleRouter
from smartfed.routers.static import StaticRouter

ROUTER_CLASSES: dict[str, type[Router]] = {
    "linear": LinearRouter, "activation": ActivationRouter, "lowrank": LowRankRouter, "static": StaticRouter, "module": ModuleRouter,
}
ROUTER_KINDS = tuple(ROUTER_CLASSES)


def uses_top_k(kind: str) -> bool:
    """Whether routers of this kind keep only the top-k experts per token (so per-matrix quotas mean something)."""
    return ROUTER_CLASSES[kind].uses_top_k


def build_router(kind: str, experts: MatrixExperts, init_std: float = 0.01, rank: int = 4) -> Router:
    """Make the router of one adapted matrix. `rank` is used by `lowrank` only."""
    M, d_in = experts.num_experts, experts.d_in
    if kind == "linear":
        return LinearRouter(d_in, M, init_std)
    if kind == "activation":
        return ActivationRouter(M, init_std)
    if kind == "lowrank":
        return LowRankRouter(d_in, M, rank, init_std)
    if kind == "static":
        return StaticRouter(experts.source)
    if kind == "module":
        return ModuleRouter(d_in, experts.source, init_std)
    raise ValueError(f"router kind expected one of {ROUTER_KINDS}, found {kind!r}")


def num_router_parameters(router: nn.Module) -> int:
    return sum(p.numel() for p in router.parameters())


__all__ = [
    "ROUTER_KINDS",
    "ActivationRouter",
    "LinearRouter",
    "LowRankRouter",
    "ModuleRouter",
    "Router",
    "StaticRouter",
    "build_router",
    "num_router_parameters",
    "topk_softmax",
    "uses_top_k",
]
