from smartfed.experts.attach import (
    attach_experts,
    detach_experts,
    get_quotas,
    load_router_state_dict,
    routed_layers,
    router_parameters,
    router_state_dict,
    set_module_weights,
    set_quotas,
)
from smartfed.experts.layer import RoutedLinear

__all__ = [
    "RoutedLinear",
    "attach_experts",
    "detach_experts",
    "get_quotas",
    "load_router_state_dict",
    "routed_layers",
    "router_parameters",
    "router_state_dict",
    "set_module_weights",
    "set_quotas",
]
