"""How much each module of a pool lowers the loss of the skill it was trained for: teacher-forced NLL per
item on that skill's dev split (never trained on), for the base model and for each module attached alone
through a `static` router with weight 1 (exactly the module's own LoRA output, as in module_selection).
The per-item cells let `smartfed pool margins` give each margin a paired bootstrap interval."""

from pathlib import Path

from torch import nn

from smartfed.data import composition_splits
from smartfed.eval.generate import item_losses
from smartfed.experts import attach_experts, detach_experts
from smartfed.pool import ExpertPool

Cells = list[tuple[float, int]]  # (summed NLL, answer tokens) per item


def skill_losses(model: nn.Module, tokenizer, skill: str, modules: dict[str, Path], examples: int,
                 max_length: int = 256, data_dir=None) -> dict[str, Cells]:
    """{"base": cells, label: cells of modules[label] alone} on the first `examples` dev items of `skill`."""
    items = composition_splits(skill, data_dir).dev[:examples]
    out = {"base": item_losses(model, tokenizer, items, max_length, desc=f"{skill} base")}
    for label, folder in modules.items():
        attach_experts(model, ExpertPool.from_adapters([folder], model), router="static")  # weight 1: the module itself
        try:
            out[label] = item_losses(model, tokenizer, items, max_length, desc=f"{skill} {label}")
        finally:
            detach_experts(model)
    return out
