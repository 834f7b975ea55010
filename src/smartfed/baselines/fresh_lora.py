"""FedIT and FFA-LoRA: every client trains a fresh PEFT LoRA on the pool's target matrices.

FedIT (Zhang et al. 2024): LoRA A and B trained, the server averages both (example-weighted).
FFA-LoRA (Sun et al. 2024): A frozen at its random init (the same on every client, from the run's
seed), only B trained and averaged, so the average of the clients' B A products is exact.
"""

from peft import LoraConfig, PeftModel, get_peft_model
from torch import nn

from smartfed.pool.expert_pool import ExpertPool


def pool_target_types(pool: ExpertPool) -> list[str]:
    """The matrix types the pool adapts (q_proj, ...): a fresh LoRA gets the same targets."""
    return sorted({name.rsplit(".", 1)[-1] for name in pool.matrices})


def attach_fresh_lora(model: nn.Module, targets: list[str], rank: int, alpha: float, freeze_a: bool) -> PeftModel:
    """Wrap `model` in a new PEFT LoRA (A random, B zero: the base model's output is unchanged)."""
    config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, lora_dropout=0.0, bias="none")
    peft_model = get_peft_model(model, config)
    if freeze_a:
        for name, p in peft_model.named_parameters():
            if ".lora_A." in name:
                p.requires_grad_(False)
    return peft_model
