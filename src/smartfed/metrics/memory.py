"""Memory a client needs for its weights and training state, from shapes alone (a model on the meta
device: no weights are downloaded), for SmartFed and for FedIT on the same targets.

Per client, in bytes:
- base weights: every nn.Linear (the head too) at 4, 2 or ~0.5625 bytes a parameter (fp32, bf16/fp16, 4-bit
  NF4 as in QLoRA: 0.5 byte plus one fp32 absmax per block of 64), everything else (embeddings,
  norms, head) in bf16 for the 4-bit case;
- SmartFed: the pool's experts (A, and B with the scale folded in) in the base dtype (bf16 for a 4-bit base), and each router parameter
  at 16 bytes (fp32 weight, gradient and two AdamW moments);
- FedIT: each LoRA parameter at 16 bytes (fp32 weight, gradient, two AdamW moments).
Activations are left out: they depend on batch and sequence length and are the same base-model
activations for both methods (gradient checkpointing trades them for compute).
"""

from dataclasses import dataclass

from torch import nn

from smartfed.experts import attach_experts, detach_experts, routed_layers
from smartfed.pool.adapter import linear_shape
from smartfed.pool.expert_pool import ExpertPool

BYTES = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0, "4bit": 0.5 + 4 / 64}
TRAINED_BYTES = 16  # fp32 weight + gradient + AdamW's two moments


@dataclass(frozen=True)
class MemoryRow:
    dtype: str
    base: float
    experts: float
    routers: float
    lora: float

    @property
    def smartfed(self) -> float:
        return self.base + self.experts + self.routers

    @property
    def fedit(self) -> float:
        return self.base + self.lora


def memory_rows(model: nn.Module, pool: ExpertPool, router: str, lora_rank: int) -> list[MemoryRow]:
    """One row per base dtype (fp32, bf16, 4-bit) for `model` (meta is fine) with `pool` and `router`."""
    linear = sum(m.weight.numel() for m in model.modules() if linear_shape(m) and hasattr(m, "weight"))
    other = sum(p.numel() for p in model.parameters()) - linear
    experts = sum(m.num_experts * (m.d_in + m.d_out) for m in pool.matrices.values())  # A and the scale-folded B
    attach_experts(model, pool, router=router)
    routers = sum(p.numel() for layer in routed_layers(model).values() for p in layer.router.parameters())
    detach_experts(model)
    lora = sum(lora_rank * (m.d_in + m.d_out) for m in pool.matrices.values())
    rows = []
    for dtype, per in BYTES.items():
        base = linear * per + other * (BYTES["bfloat16"] if dtype == "4bit" else per)
        rows.append(MemoryRow(dtype, base, experts * (BYTES["bfloat16"] if dtype == "4bit" else per), routers * TRAINED_BYTES,
                              lora * TRAINED_BYTES))
    return rows


def format_memory_table(rows: list[MemoryRow], title: str, router: str, lora_rank: int) -> str:
    gb = 1e9
    lines = [f"#### {title}", "", f"| base weights | base GB | experts GB | {router} routers + AdamW GB | SmartFed GB | "
             f"LoRA r{lora_rank} + AdamW GB | FedIT GB |", "|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.dtype} | {r.base / gb:.2f} | {r.experts / gb:.3f} | {r.routers / gb:.3f} | {r.smartfed / gb:.2f} | "
                     f"{r.lora / gb:.3f} | {r.fedit / gb:.2f} |")
    lines.append("\nActivations excluded (the same base-model activations for both; batch and sequence dependent).")
    return "\n".join(lines)
