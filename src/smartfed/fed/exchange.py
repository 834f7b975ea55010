"""What the server sends each sampled client and what comes back: the engines' only interface.

`exchange(round, {client: ClientRequest})` returns one ClientReply per client (a generator may yield
them as they come: the server loop folds each into the running aggregate and drops it). The
in-process engine calls `client_update` (simulation.py); the Flower ServerApp sends Messages.
"""

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ClientRequest:
    payload: bytes  # the state to start from, as wire bytes (the same object for every client of a shared model)
    quotas: dict[str, int]
    budget_k_avg: float | None = None  # set when the client's quotas were scaled to its announced budget
    extra_download_bytes: int = 0  # what else the client must fetch to be in sync (FLoRA: the stacks it has not folded)


@dataclass
class ClientReply:
    """What came back from one client in one round. `upload` is None if the client was dropped."""

    client: int
    upload: bytes | None
    num_examples: object = 0  # self-reported: checked by the server before it is used
    metrics: dict = field(default_factory=dict)
    status: str = "ok"
    importance: dict[str, float] | None = None  # EEQA scores, uploaded with the state


Exchange = Callable[[int, dict[int, ClientRequest]], Iterable[ClientReply]]
