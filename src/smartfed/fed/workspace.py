"""What every client of a process shares, loaded once: the base model with what the method trains
attached (pool experts with routers, the pool memory-mapped; or a fresh LoRA on the pool's target
matrices), the tokenizer, and each client's partition of the composition's data."""

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from smartfed.baselines import attach_fresh_lora, pool_target_types
from smartfed.data import Example, composition_splits
from smartfed.data.partition import partition
from smartfed.experts import attach_experts
from smartfed.fed.config import RunConfig
from smartfed.models import cache_dir, load_base_model
from smartfed.pool import ExpertPool

POOL_FILE = "pool.safetensors"


@dataclass
class Workspace:
    model: torch.nn.Module
    tokenizer: object
    pool: ExpertPool
    pool_file: Path | None  # None: the method does not use the pool (fedit, ffa-lora)
    client_data: list[list[Example]]
    heldout: list[Example]


def default_pool_dir(model: str) -> Path:
    return cache_dir() / "pools" / Path(model).name.removesuffix(".gguf")


def resolve_pool_file(config: RunConfig, model) -> Path:
    """The pool as one safetensors file: given, or decomposed once from adapter folders and cached."""
    if len(config.pool) == 1 and config.pool[0].endswith(".safetensors"):
        return Path(config.pool[0])
    if config.pool:
        folders = [Path(p) for p in config.pool]
        pool_file = folders[0].parent / f"pool-{'-'.join(f.name for f in folders)}.safetensors"
    else:
        from smartfed.pool.build import build_all

        folders = build_all(str(default_pool_dir(config.model)), model=config.model)  # builds what is missing
        pool_file = default_pool_dir(config.model) / POOL_FILE
    newest_adapter = max((f / "adapter_model.safetensors").stat().st_mtime for f in folders)
    if not pool_file.is_file() or pool_file.stat().st_mtime < newest_adapter:
        ExpertPool.from_adapters(folders, model).save(pool_file)
    return pool_file


def build_workspace(config: RunConfig) -> Workspace:
    model, tokenizer = load_base_model(config.model)
    pool_file = resolve_pool_file(config, model)
    pool = ExpertPool.load(pool_file)  # memory-mapped
    torch.manual_seed(config.seed)  # the initial routers (or LoRA A) are a function of the seed
    if config.routed_with:
        attach_experts(model, pool, router=config.routed_with, top_k=config.top_k)
    else:
        model = attach_fresh_lora(model, pool_target_types(pool), config.lora_rank, config.lora_alpha, freeze_a=config.method == "ffa-lora")
        pool_file = None
    train, heldout = composition_splits(config.composition, config.data_dir or None)
    parts = partition(train, config.partition, config.num_clients, config.seed)
    if config.data_fraction < 1:
        parts = [p[: max(1, math.ceil(config.data_fraction * len(p)))] for p in parts]
    return Workspace(model, tokenizer, pool, pool_file, parts, heldout[: config.eval_examples])
