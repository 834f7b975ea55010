"""What the Flower apps share: the run config from Flower's run config, and one workspace per process."""

import json
from functools import cache

from smartfed.fed.config import RunConfig, load_config
from smartfed.fed.workspace import Workspace, build_workspace

# [tool.flwr.app.config] keys: the smartfed run TOML and `key=value` overrides separated by spaces.
CONFIG_FILE, OVERRIDES = "config-file", "overrides"


def config_from(run_config: dict) -> RunConfig:
    path = str(run_config.get(CONFIG_FILE, "")) or None
    overrides = str(run_config.get(OVERRIDES, "")).split()
    return load_config(path, overrides)


@cache
def _workspace(config_json: str) -> Workspace:
    return build_workspace(RunConfig(**json.loads(config_json)))


def workspace(config: RunConfig) -> Workspace:
    """Built once per process (model, pool memory-mapped, data) and reused by every message of the run."""
    from dataclasses import asdict

    return _workspace(json.dumps(asdict(config), sort_keys=True))
