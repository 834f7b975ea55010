"""FFA-LoRA (Sun et al. 2024): A frozen at its seeded random init, the same on every client; only B
is trained and averaged, so the average of the clients' B A products is exact."""

from smartfed.methods.fresh_lora import FreshLora


class FFALora(FreshLora):
    name = "ffa-lora"
    lr = 3e-3  # chosen on the zh+math dev split: docs/tuning/zh+math/tuning.md
    freeze_a = True
