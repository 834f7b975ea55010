"""`arrow` (Ostapenko et al. 2024): training-free routing over whole pool modules. Each token is sent
to the top-k modules whose prototype (the top right singular vector of B A) it aligns with most,
mixed by a softmax over those scores (`routers/module_arrow.py`, equal to peft's
`create_arrow_model` where peft accepts the pool: same rank and targets for every module). Nothing
is trained or sent: the run is its round 0, evaluated and scored like any other."""

from smartfed.methods.routed import RoutedMethod


class Arrow(RoutedMethod):
    name = "arrow"
    trains_anything = False
    lr = None
    config_sections = ("arrow",)

    def router_kind(self, config) -> str:
        return "module-arrow"

    def router_options(self, config) -> dict:
        return {"module_top_k": config.arrow.top_k, "temperature": config.arrow.temperature}

    def trains(self, config) -> str:
        return f"nothing (Arrow top-{config.arrow.top_k} modules)"
