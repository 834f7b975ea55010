"""Every method the runner knows, by the name used in configs (`run.method`). One line per method."""

from smartfed.errors import ConfigError
from smartfed.methods.arrow import Arrow
from smartfed.methods.base import LocalWork, Method
from smartfed.methods.fedit import FedIT
from smartfed.methods.flora import FLoRA
from smartfed.methods.ffa_lora import FFALora
from smartfed.methods.local import Local
from smartfed.methods.lorahub import LoraHub
from smartfed.methods.module_router import ModuleRouter
from smartfed.methods.smartfed import SmartFed

METHODS: dict[str, Method] = {m.name: m for m in (SmartFed(), FedIT(), FFALora(), FLoRA(), LoraHub(), ModuleRouter(), Arrow(), Local())}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise ConfigError(f"config key 'run.method': expected one of {', '.join(METHODS)}, found {name!r}")
    return METHODS[name]


__all__ = ["METHODS", "LocalWork", "Method", "get_method"]
