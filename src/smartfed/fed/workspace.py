"""What a process loads, split by who may see it.

The server side is the base model with what the method trains attached (pool experts with routers,
the pool memory-mapped; or a fresh LoRA on the pool's target matrices), the tokenizer and the
held-out set: the Flower ServerApp loads only this. A client's data is its partition of the
composition's training split, loaded by the process that trains it (a SuperNode, or the
in-process engine, which plays every client).
"""

import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open

from smartfed.config import RunConfig
from smartfed.data import Example, composition_splits, heldout_split
from smartfed.data.partition import partition
from smartfed.io import shown_path
from smartfed.methods import get_method
from smartfed.models import load_base_model
from smartfed.pool import ExpertPool
from smartfed.pool.resolve import resolve_pool_file


@dataclass
class ModelSide:
    model: torch.nn.Module
    tokenizer: object
    pool_file: Path | None  # None: the method's clients do not need the pool (a fresh LoRA)
    provenance: dict[str, str]  # the pool file, the content hash of the adapters it was made from, the device it runs on


def _pool_provenance(pool_file: Path) -> dict[str, str]:
    with safe_open(pool_file, framework="pt") as f:
        metadata = f.metadata() or {}
    return {"pool_file": shown_path(pool_file), "adapters_sha256": metadata.get("adapters_sha256", "unknown (a pool file made elsewhere)"),
            "adapter_sources": _shown_sources(metadata.get("adapter_sources", "[]"))}  # hub sources with the commit each resolved to


def device_of(model: torch.nn.Module) -> str:
    """Where `model` runs, as resolved from model.device (`auto` names no machine): `cpu`, or e.g. `cuda:0 (NVIDIA H200)`.
    The in-process engine's clients share it; under Flower it is the server's (each client resolves its own)."""
    device = next(model.parameters()).device
    return f"{device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else str(device)


def _shown_sources(recorded: str) -> str:
    """The pool file's adapter sources (JSON) with local folders named without this machine's home or working
    folder (hub ids as they are); as recorded where that is not a list of sources (a pool file made elsewhere)."""
    try:
        sources = json.loads(recorded)
        return json.dumps([s | {"source": s["source"] if s["source"].startswith("hf:") else shown_path(s["source"])}
                           for s in sources], ensure_ascii=False)
    except (ValueError, TypeError, KeyError, AttributeError):
        return recorded


def load_model_side(config: RunConfig) -> ModelSide:
    """The base model with the method attached; its initial trainable state is a function of run.seed."""
    model, tokenizer = load_base_model(config.model.name, config.model.dtype, config.model.device)
    pool_file = resolve_pool_file(config.pool.adapters, config.model.name, model)
    pool = ExpertPool.load(pool_file)  # memory-mapped
    method = get_method(config.run.method)
    torch.manual_seed(config.run.seed)
    model = method.attach(model, pool, config)
    if config.training.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    return ModelSide(model, tokenizer, pool_file if method.ships_pool else None,
                     _pool_provenance(pool_file) | {"device": device_of(model)})


def heldout_set(config: RunConfig) -> list[Example]:
    """The first eval.examples items of the composition's held-out split (disjoint from training)."""
    return heldout_split(config.data.composition, config.data.dir or None)[: config.eval.examples]


def dev_set(config: RunConfig) -> list[Example]:
    """The first eval.examples items of the composition's dev split: settings are chosen on these."""
    return composition_splits(config.data.composition, config.data.dir or None).dev[: config.eval.examples]


def evaluation_set(config: RunConfig) -> list[Example]:
    """What the loop's per-round loss is measured on: eval.split, held-out (the default) or dev."""
    return dev_set(config) if config.eval.split == "dev" else heldout_set(config)


def client_partitions(config: RunConfig) -> list[list[Example]]:
    """Every client's training data (data.fraction of its partition); only client processes call this."""
    train = composition_splits(config.data.composition, config.data.dir or None).train
    parts = partition(train, config.data.partition, config.federation.num_clients, config.run.seed)
    if config.data.fraction < 1:
        parts = [p[: max(1, math.ceil(config.data.fraction * len(p)))] for p in parts]
    return parts
