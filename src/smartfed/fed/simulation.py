"""The in-process engine (the default): every client runs in this process, one after another, on
one shared model with the pool memory-mapped; per client only its data and the router state change.
It calls the same `client_update` as the Flower ClientApp and sends the same bytes."""

import time
from collections.abc import Callable, Iterator

from tqdm.auto import tqdm

from smartfed.fed.client import client_update
from smartfed.fed.config import RunConfig
from smartfed.fed.federation import ClientReply, client_seed, run_federation, training_of
from smartfed.fed.local import run_local
from smartfed.fed.wire import decode_state, encode_state
from smartfed.fed.workspace import Workspace, build_workspace


def local_exchange(config: RunConfig, ws: Workspace, client_fn: Callable = client_update):
    def exchange(round_: int, payload: bytes, quotas: dict[int, dict[str, int]], clients: list[int]) -> Iterator[ClientReply]:
        for client in tqdm(clients, desc=f"round {round_}/{config.rounds}", unit="client", leave=False):
            began = time.time()
            try:
                result = client_fn(ws.model, ws.tokenizer, decode_state(payload), quotas[client], ws.client_data[client],
                                   training_of(config), client_seed(config, round_, client))
            except Exception as err:  # a crashed client is dropped for this round
                yield ClientReply(client, None, status=f"dropped: {type(err).__name__}: {err}")
                continue
            seconds = time.time() - began
            if config.client_timeout_s and seconds > config.client_timeout_s:
                yield ClientReply(client, None, metrics=result.metrics,
                                  status=f"dropped: took {seconds:.1f} s > client_timeout_s={config.client_timeout_s}")
                continue
            yield ClientReply(client, encode_state(result.state), result.num_examples,
                              result.metrics | {"seconds": round(seconds, 2)}, importance=result.importance)
    return exchange


def run_simulation(config: RunConfig, resume: bool = False, client_fn: Callable = client_update, log=print) -> dict:
    """Run (or resume) `config` in this process; return the run's summary."""
    ws = build_workspace(config)
    if config.method == "local":
        if resume:
            raise ValueError(f"{config.run_dir}: a `local` run cannot be resumed; start it again under another name")
        return run_local(config, ws, log=log)
    return run_federation(config, ws, local_exchange(config, ws, client_fn), resume=resume, log=log)
