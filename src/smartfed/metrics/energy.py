"""The energy model (docs/energy.md): device compute from measured CPU time, radio from bytes moved.

    E = cpu_s * cpu_watts + bytes_up * uplink_j_per_byte + bytes_down * downlink_j_per_byte

per client per round, with the constants from the run config (defaults and their sources in
docs/energy.md). A dropped client still received the global state: its download counts.
"""


FORWARD_ONLY_METHODS = ("lorahub",)  # gradient-free search: its client tokens only go forward


def forward_token_passes(method: str, tokens: int) -> int:
    """A client's base-model compute in forward-pass token equivalents: a contention-free cross-check of its CPU time.

    A forward pass costs about 2 x params FLOPs per token; a training step about twice that (the
    backward pass computes activation gradients through the frozen base weights, about 2 x params
    per token, and skips their weight gradients). So a trained token is 2 passes, a forward-only
    (LoRAHub search) token 1. What a method adds on top of the base model (LoRA, experts, routers:
    2-11% per token here) is left out; docs/energy.md gives the figures.
    """
    return tokens * (1 if method in FORWARD_ONLY_METHODS else 2)


def client_energy(config, record: dict) -> tuple[float, float]:
    """(compute J, radio J) of one client's round from its metrics record."""
    compute = record.get("cpu_s", 0.0) * config.cpu_watts
    radio = record["bytes_up"] * config.uplink_j_per_byte + record["bytes_down"] * config.downlink_j_per_byte
    return compute, radio


def round_energy(config, clients: list[dict]) -> dict[str, float]:
    compute, radio = (sum(parts) for parts in zip(*(client_energy(config, c) for c in clients))) if clients else (0.0, 0.0)
    return {"energy_compute_j": compute, "energy_radio_j": radio}
