"""The in-process engine (the default): every client runs in this process, one after another, on
one shared model with the pool memory-mapped; per client only its data and its starting state
change. It calls the same `client_update` as the Flower ClientApp and sends the same bytes."""

import time
from collections.abc import Callable, Iterator

from tqdm.auto import tqdm

from smartfed.config import RunConfig
from smartfed.fed.client import client_seed, client_update
from smartfed.fed.exchange import ClientReply, ClientRequest
from smartfed.fed.loop import run_federation
from smartfed.fed.records import Summary
from smartfed.fed.wire import decode_state, encode_state
from smartfed.fed.workspace import ModelSide, client_partitions, evaluation_set, load_model_side


def local_exchange(config: RunConfig, side: ModelSide, partitions: list[list], client_fn: Callable = client_update):
    timeout = config.federation.client_timeout_s

    def exchange(round_: int, requests: dict[int, ClientRequest]) -> Iterator[ClientReply]:
        for client, request in tqdm(requests.items(), desc=f"round {round_}/{config.federation.rounds}", unit="client", leave=False):
            began = time.time()
            try:
                result = client_fn(config, side.model, side.tokenizer, decode_state(request.payload), request.quotas,
                                   partitions[client], client_seed(config, round_, client))
            except Exception as err:  # a crashed client is dropped for this round
                yield ClientReply(client, None, status=f"dropped: {type(err).__name__}: {err}")
                continue
            seconds = time.time() - began
            if timeout and seconds > timeout:
                yield ClientReply(client, None, metrics=result.metrics, status=f"dropped: took {seconds:.1f} s > client_timeout_s={timeout}")
                continue
            yield ClientReply(client, encode_state(result.state), result.num_examples,
                              result.metrics | {"seconds": round(seconds, 2)}, importance=result.importance)
    return exchange


def run_simulation(config: RunConfig, resume: bool = False, client_fn: Callable = client_update, log=print) -> Summary:
    """Run (or resume) `config` in this process; return the run's summary."""
    side = load_model_side(config)
    exchange = local_exchange(config, side, client_partitions(config), client_fn)
    return run_federation(config, side, evaluation_set(config), exchange, resume=resume, log=log)
