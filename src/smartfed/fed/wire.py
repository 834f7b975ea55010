"""What crosses the network: router states as safetensors bytes. The simulator and the Flower apps
send exactly these bytes, so the byte counts of both are the same measurement."""

import torch
from safetensors.torch import load, save


def encode_state(state: dict[str, torch.Tensor]) -> bytes:
    return save({k: v.contiguous() for k, v in state.items()})


def decode_state(payload: bytes) -> dict[str, torch.Tensor]:
    return load(payload)
