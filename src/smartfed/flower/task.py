"""What the Flower apps share: the run config from Flower's run config, and what each process loads
once: the model side (both apps) and, on a SuperNode only, the clients' data."""

import tomllib
from functools import cache

from smartfed.config import RunConfig, load_config
from smartfed.data import Example
from smartfed.fed.workspace import ModelSide, client_partitions, load_model_side

# [tool.flwr.app.config] keys: the smartfed run TOML and `section.key=value` overrides separated by spaces.
CONFIG_FILE, OVERRIDES = "config-file", "overrides"


def config_from(run_config: dict) -> RunConfig:
    path = str(run_config.get(CONFIG_FILE, "")) or None
    overrides = str(run_config.get(OVERRIDES, "")).split()
    return load_config(path, overrides)


def _from_toml(config_toml: str) -> RunConfig:
    """The config back from its TOML text: the cache key (a config holds a dict, so it is not hashable)."""
    return RunConfig.model_validate(tomllib.loads(config_toml))


@cache
def _model_side(config_toml: str) -> ModelSide:
    return load_model_side(_from_toml(config_toml))


def model_side(config: RunConfig) -> ModelSide:
    """Built once per process (model, pool memory-mapped) and reused by every message of the run."""
    return _model_side(config.to_toml())


@cache
def _partitions(config_toml: str) -> list[list[Example]]:
    return client_partitions(_from_toml(config_toml))


def client_data(config: RunConfig, partition: int) -> list[Example]:
    """This SuperNode's training data (loaded once per process); never called by the ServerApp."""
    return _partitions(config.to_toml())[partition]
