"""FLoRA (Wang et al. 2024): federated LoRA with exact aggregation by stacking.

Every round each sampled client trains a fresh LoRA (rank r, from the run's seeded start). The
server stacks the clients' LoRAs along the rank, A = [A_1; ...; A_K] and B = [p_1 B_1, ..., p_K B_K]
with p_k = n_k / sum n, so B A = sum_k p_k B_k A_k exactly, and every model folds s B A into its
frozen base weights; the next round starts from a fresh LoRA again. A client downloads every stack
it has not folded yet (the whole history for a client sampled for the first time), so its
downloads grow with the rounds: they are counted as sent.
"""

import torch
from torch import nn

from smartfed.methods.fresh_lora import FreshLora

State = dict[str, torch.Tensor]


def _module_of(key: str) -> tuple[str, str]:
    """('base_model.model.<module>', 'A' | 'B') of a peft LoRA key '<module>.lora_A.default.weight'."""
    module, _, rest = key.partition(".lora_")
    return module, rest[0]


class StackedLora:
    """The stacking aggregate: example weights on B, clients side by side along the rank."""

    def __init__(self):
        self.updates: list[tuple[State, int]] = []

    def add(self, state: State, num_examples: int) -> None:
        self.updates.append((state, num_examples))

    def result(self) -> State:
        if not self.updates:
            raise ValueError("aggregate expected at least one update, found none")
        total = sum(n for _, n in self.updates)
        out = {}
        for key in self.updates[0][0]:
            if _module_of(key)[1] == "A":
                out[key] = torch.cat([s[key] for s, _ in self.updates], dim=0)  # (K r, d_in)
            else:
                out[key] = torch.cat([s[key] * (n / total) for s, n in self.updates], dim=1)  # (d_out, K r)
        return out


class FLoRA(FreshLora):
    name = "flora"
    lr = 3e-3  # chosen on the zh+math dev split: docs/tuning/zh+math/tuning.md
    folds_into_base = True

    def new_aggregate(self) -> StackedLora:
        return StackedLora()

    def fold(self, model: nn.Module, stacked: State) -> None:
        """W0 += s B A for every adapted matrix of `model` (the peft model the method attached)."""
        pairs: dict[str, dict[str, torch.Tensor]] = {}
        for key, value in stacked.items():
            module, part = _module_of(key)
            pairs.setdefault(module, {})[part] = value
        with torch.no_grad():
            for module, parts in pairs.items():
                layer = model.get_submodule(module)
                delta = layer.scaling["default"] * (parts["B"] @ parts["A"])  # (d_out, d_in)
                weight = layer.get_base_layer().weight
                weight += (delta.T if getattr(layer, "fan_in_fan_out", False) else delta).to(weight.device, weight.dtype)
