"""`module-router` (MoLE / X-LoRA style): a per-token softmax gate over whole pool modules per
matrix (`routers/module.py`); a module is mixed as a whole, never split along its rank."""

from smartfed.methods.routed import RoutedMethod


class ModuleRouter(RoutedMethod):
    name = "module-router"
    lr = 0.1  # chosen on the zh+math dev split (the grid's top edge, extended once: 0.1 beat 0.03): docs/tuning/zh+math/tuning.md

    def router_kind(self, config) -> str:
        return "module"
