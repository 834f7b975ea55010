"""The methods SmartFed is compared against, run by the same federated runner (`method = ...`)."""

from smartfed.baselines.fresh_lora import attach_fresh_lora, pool_target_types
from smartfed.baselines.lorahub import module_weights, search_module_weights

__all__ = ["attach_fresh_lora", "module_weights", "pool_target_types", "search_module_weights"]
