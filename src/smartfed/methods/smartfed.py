"""SmartFed (the paper): routers over the pool's rank-1 experts, per-matrix quotas from EEQA."""

from smartfed.methods.routed import RoutedMethod
from smartfed.routers import arrow_initialisable, uses_top_k


class SmartFed(RoutedMethod):
    name = "smartfed"
    lr = 0.1  # chosen on the zh+math dev split (the grid's top edge, extended once: 0.1 beat 0.03): docs/tuning/zh+math/tuning.md

    def router_kind(self, config) -> str:
        return config.router.kind

    def router_init(self, config) -> str:
        """`auto`: Arrow's start where the router kind can express it (the tuned default), else random."""
        if config.router.init == "auto":
            return "arrow" if config.router.kind in arrow_initialisable() else "random"
        return config.router.init

    def uses_eeqa(self, config) -> bool:
        """EEQA where per-matrix top-k quotas mean something: routers that keep the top-k experts."""
        return config.eeqa.enabled and uses_top_k(config.router.kind)
