"""SmartFed: federated fine-tuning by routing frozen rank-1 experts of existing LoRA modules."""

from smartfed.experts import (
    attach_experts,
    detach_experts,
    get_quotas,
    load_router_state_dict,
    router_parameters,
    router_state_dict,
    set_quotas,
)
from smartfed.models import load_base_model
from smartfed.pool import ExpertPool

__version__ = "0.2.0"

__all__ = [
    "ExpertPool",
    "attach_experts",
    "detach_experts",
    "get_quotas",
    "load_base_model",
    "load_router_state_dict",
    "router_parameters",
    "router_state_dict",
    "set_quotas",
]
