"""Each module of a library alone on a task's dev items: its teacher-forced loss per item against the base
model's. `smartfed pool select` picks the modules most relevant to a task by it (a few public examples of
the task, the composition's dev split); `smartfed pool margins` states how much each module of a pool
lowers its own skill's loss. The base model gets each module alone through a `static` router with weight
1, which is exactly the module's own LoRA output (tested against peft), then is given back unchanged."""

from dataclasses import dataclass
from pathlib import Path

from torch import nn

from smartfed.data import Example, composition_splits
from smartfed.eval.generate import item_losses, mean_loss
from smartfed.experts import attach_experts, detach_experts
from smartfed.pool import ExpertPool
from smartfed.pool.sources import ManifestModule, fetch_checked, pinned


@dataclass(frozen=True)
class ModuleScore:
    module: ManifestModule
    loss: float
    base_loss: float
    pinned_source: str  # the source at the hub commit it resolved to, its weights' sha256 pinned (sources.pinned)

    @property
    def gain(self) -> float:
        return self.base_loss - self.loss

    def why(self, examples: int, task: str) -> str:
        return (f"loss {self.loss:.4f} vs the base model's {self.base_loss:.4f} ({-self.gain:+.4f}) on {examples} dev items of {task}; "
                f"skills {', '.join(self.module.skills) or '-'}; license {self.module.license}")


Cells = list[tuple[float, int]]  # (summed NLL, answer tokens) per item


def alone_item_losses(model: nn.Module, tokenizer, items: list[Example], folders: dict[str, Path],
                      max_length: int = 384) -> tuple[Cells, dict[str, Cells]]:
    """(the base model's per-item losses on `items`, {label: those of module folder `label` alone (weight 1)});
    the model is given back unchanged."""
    base = item_losses(model, tokenizer, items, max_length, desc="base")
    alone = {}
    for label, folder in folders.items():
        attach_experts(model, ExpertPool.from_adapters([folder], model), router="static")  # weight 1: the module itself
        try:
            alone[label] = item_losses(model, tokenizer, items, max_length, desc=label)
        finally:
            detach_experts(model)
    return base, alone


def score_modules(model: nn.Module, tokenizer, modules: list[ManifestModule], task: str, examples: int = 16,
                  data_dir=None) -> list[ModuleScore]:
    """Every module's score, best (lowest loss) first; each module's weights are checked against its sha256."""
    items = composition_splits(task, data_dir).dev[:examples]
    fetched = [fetch_checked(m) for m in modules]
    base, alone = alone_item_losses(model, tokenizer, items, {str(i): f.folder for i, f in enumerate(fetched)})
    return sorted((ModuleScore(m, mean_loss(alone[str(i)]), mean_loss(base), pinned(m.source, f.revision, m.sha256))
                   for i, (m, f) in enumerate(zip(modules, fetched))), key=lambda s: s.loss)
