"""How big routers are, per adapted matrix and in total, next to a fresh LoRA on the same targets.

Works on real models and on models built on the `meta` device from a published config (no weights),
so the paper's "< 0.1% of the LLM" can be checked at LLaMA-2-7B scale on a laptop.
"""

import re
from dataclasses import dataclass, replace

import torch
from safetensors.torch import save
from torch import nn
from transformers import AutoModelForCausalLM, LlamaConfig, Qwen2Config

from smartfed.experts import attach_experts, detach_experts, routed_layers, router_state_dict
from smartfed.models.families import LLAMA_LINEAR_TYPES
from smartfed.pool.adapter import LoraAdapter, LoraMatrix, linear_shape
from smartfed.pool.expert_pool import ExpertPool

# Published SmolLM2-135M shapes (the default model's config.json): 30 layers, tied embeddings.
SMOLLM2_135M = LlamaConfig(
    hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9, num_key_value_heads=3, head_dim=64,
    vocab_size=49152, max_position_embeddings=8192, tie_word_embeddings=True,
)
# Published Qwen2-7B shapes (Yang et al. 2024, the released config.json): grouped-query attention, 4 KV heads.
QWEN2_7B = Qwen2Config(
    hidden_size=3584, intermediate_size=18944, num_hidden_layers=28, num_attention_heads=28, num_key_value_heads=4,
    vocab_size=152064, tie_word_embeddings=False,
)
# Published LLaMA-2-7B shapes (Touvron et al. 2023, Table 1 / the released config.json).
LLAMA2_7B = LlamaConfig(
    hidden_size=4096, intermediate_size=11008, num_hidden_layers=32, num_attention_heads=32,
    num_key_value_heads=32, vocab_size=32000,
)


# Models by name whose shapes are known without their weights (benches build them with random weights).
SHAPES = {"smollm2-135m": SMOLLM2_135M, "qwen2-7b": QWEN2_7B, "llama2-7b": LLAMA2_7B}


def meta_model(config) -> nn.Module:
    """A model with the right shapes and no weights."""
    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(config)


def shape_only_pool(model: nn.Module, num_modules: int, rank: int, targets=LLAMA_LINEAR_TYPES) -> ExpertPool:
    """A pool of `num_modules` LoRA modules of rank `rank` on `targets`, with meta (shape-only) experts."""
    matrices = {}
    for name, module in model.named_modules():
        shape = linear_shape(module)
        if shape and name.rsplit(".", 1)[-1] in targets:
            d_in, d_out = shape
            matrices[name] = LoraMatrix(torch.empty(rank, d_in, device="meta"), torch.empty(d_out, rank, device="meta"), 1.0)
    adapters = [LoraAdapter(f"module{n}", "", None, rank, 2.0 * rank, False, matrices) for n in range(num_modules)]
    return ExpertPool.from_lora(adapters, model)


@dataclass(frozen=True)
class SizeRow:
    matrix_type: str
    num_matrices: int
    num_experts: int  # M_j
    d_in: int
    d_out: int
    params: dict[str, int]  # per matrix: router kind -> parameters, plus "lora_r{r}"


def matrix_type(name: str) -> str:
    return re.sub(r"\.\d+\.", ".*.", name).rsplit(".", 1)[-1]


def router_sizes(model: nn.Module, pool: ExpertPool, kinds: tuple[str, ...], lora_rank: int) -> list[SizeRow]:
    """Parameters of one router per matrix type, for each router kind, and of a LoRA r=lora_rank."""
    per_kind: dict[str, dict[str, int]] = {}
    for kind in kinds:
        attach_experts(model, pool, router=kind)
        per_kind[kind] = {n: sum(p.numel() for p in layer.router.parameters()) for n, layer in routed_layers(model).items()}
        detach_experts(model)
    rows: dict[str, SizeRow] = {}
    for name, experts in pool.matrices.items():
        kind_params = {k: per_kind[k][name] for k in kinds} | {f"lora_r{lora_rank}": lora_rank * (experts.d_in + experts.d_out)}
        t = matrix_type(name)
        if t not in rows:
            rows[t] = SizeRow(t, 0, experts.num_experts, experts.d_in, experts.d_out, kind_params)
        if rows[t].params != kind_params:
            raise ValueError(f"matrices of type {t} differ in size; report them per matrix instead")
        rows[t] = replace(rows[t], num_matrices=rows[t].num_matrices + 1)
    return list(rows.values())


def upload_bytes(model: nn.Module, pool: ExpertPool, kind: str) -> int:
    """Bytes of one router upload as actually serialised (safetensors, fp32), on a real (non-meta) model."""
    attach_experts(model, pool, router=kind)
    try:
        return len(save(router_state_dict(model)))
    finally:
        detach_experts(model)


def format_size_table(rows: list[SizeRow], base_params: int, title: str, bytes_per_upload: dict[str, int] | None = None) -> str:
    kinds = list(rows[0].params)
    lines = [
        f"### {title}",
        "",
        "| matrix | count | M_j | d_in x d_out | " + " | ".join(f"{k} params" for k in kinds) + " |",
        "|---|---:|---:|---|" + "---:|" * len(kinds),
    ]
    for r in rows:
        lines.append(f"| {r.matrix_type} | {r.num_matrices} | {r.num_experts} | {r.d_in} x {r.d_out} | " + " | ".join(f"{r.params[k]:,}" for k in kinds) + " |")
    totals = {k: sum(r.params[k] * r.num_matrices for r in rows) for k in kinds}
    lines.append("| **total** | | | | " + " | ".join(f"**{totals[k]:,}**" for k in kinds) + " |")
    lines.append("| share of base model | | | | " + " | ".join(f"{100 * totals[k] / base_params:.3f}%" for k in kinds) + " |")
    lines.append("| fp32 MB per upload | | | | " + " | ".join(f"{4 * totals[k] / 1e6:.2f}" for k in kinds) + " |")
    if bytes_per_upload:
        lines.append("| serialised bytes per upload (measured) | | | | " + " | ".join(f"{bytes_per_upload[k]:,}" if k in bytes_per_upload else "" for k in kinds) + " |")
    lines.append("| LoRA / router (upload ratio) | | | | " + " | ".join(f"{totals[kinds[-1]] / totals[k]:.1f}x" if totals[k] else "-" for k in kinds) + " |")
    lines.append(f"\nBase model: {base_params:,} parameters.")
    return "\n".join(lines)
