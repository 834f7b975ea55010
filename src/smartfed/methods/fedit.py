"""FedIT (Zhang et al. 2024): every client trains a fresh LoRA; the server averages A and B."""

from smartfed.methods.fresh_lora import FreshLora


class FedIT(FreshLora):
    name = "fedit"
    lr = 1e-3  # chosen on the zh+math dev split: docs/tuning/zh+math/tuning.md
    is_reference = True  # the paper's headline ratios are against FedIT
