"""Pick the modules of a library most relevant to a task, by a cheap score: each module's teacher-forced
loss on a few public examples of the task (the composition's dev split), against the base model's.
The base model gets each module alone through a `static` router with weight 1, which is exactly the
module's own LoRA output (tested against peft), then is given back unchanged."""

from dataclasses import dataclass

from torch import nn

from smartfed.data import composition_splits
from smartfed.eval.generate import heldout_loss
from smartfed.experts import attach_experts, detach_experts
from smartfed.pool import ExpertPool
from smartfed.pool.sources import ManifestModule, fetch_checked


@dataclass(frozen=True)
class ModuleScore:
    module: ManifestModule
    loss: float
    base_loss: float

    @property
    def gain(self) -> float:
        return self.base_loss - self.loss

    def why(self, examples: int, task: str) -> str:
        return (f"loss {self.loss:.4f} vs the base model's {self.base_loss:.4f} ({-self.gain:+.4f}) on {examples} dev items of {task}; "
                f"skills {', '.join(self.module.skills) or '-'}; license {self.module.license}")


def score_modules(model: nn.Module, tokenizer, modules: list[ManifestModule], task: str, examples: int = 16,
                  data_dir=None) -> list[ModuleScore]:
    """Every module's score, best (lowest loss) first; each module's weights are checked against its sha256."""
    items = composition_splits(task, data_dir).dev[:examples]
    base_loss = heldout_loss(model, tokenizer, items, desc="base")
    scores = []
    for module in modules:
        folder = fetch_checked(module).folder
        attach_experts(model, ExpertPool.from_adapters([folder], model), router="static")  # weight 1: the module itself
        scores.append(ModuleScore(module, heldout_loss(model, tokenizer, items, desc=module.name), base_loss))
        detach_experts(model)
    return sorted(scores, key=lambda s: s.loss)
