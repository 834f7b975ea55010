"""Whose model a client trains, and what becomes of its update.

SharedModel (every federated method): the sampled clients start from one global state and the
example-weighted FedAvg of the accepted updates replaces it; one EEQA planner for the federation.
FoldingModel (FLoRA): the round's aggregate is folded into the base weights of the model and every
round starts from the same fresh state; a client downloads the aggregates it has not folded yet.
OwnModels (a method that does not federate, `local`): every client trains every round from its own
previous state, keeps the result, and re-allocates its quotas from its own scores; nothing is sent.
Both checkpoint everything the next round needs, so both resume.
"""

import json
import random
from collections.abc import Callable
from dataclasses import replace

import torch
from torch import nn

from smartfed.config import RunConfig
from smartfed.fed.exchange import ClientRequest
from smartfed.fed.server import new_aggregate
from smartfed.fed.wire import encode_state
from smartfed.methods import Method
from smartfed.quota import QuotaPlanner

State = dict[str, torch.Tensor]


def make_planner(config: RunConfig, uses_eeqa: bool, sizes: dict[str, int]) -> QuotaPlanner:
    e = config.eeqa
    return QuotaPlanner(sizes, config.router.top_k, e.k_min, e.smoothing, e.realloc_every, uses_eeqa, e.device_budgets,
                        robust=config.aggregation.rule != "fedavg")


def sample_clients(config: RunConfig, round_: int) -> list[int]:
    fed = config.federation
    return sorted(random.Random(f"{config.run.seed}/{round_}").sample(range(fed.num_clients), fed.clients_per_round))


def _request(planner: QuotaPlanner, client: int, payload: bytes, quotas: dict[str, int]) -> ClientRequest:
    scaled = planner.for_client(client, quotas)
    return ClientRequest(payload, scaled, planner.device_budgets.get(client) if scaled is not quotas else None)


class SharedModel:
    sends = True

    def __init__(self, config: RunConfig, planner: QuotaPlanner, state: State, quotas: dict[str, int], new_aggregate: Callable):
        """`new_aggregate(global_state)`: the round's aggregate (add, result)."""
        self.config, self.planner, self.state, self.quotas = config, planner, state, quotas
        self.trained_quotas, self.new_aggregate = quotas, new_aggregate
        self.aggregate, self.replies, self.round = new_aggregate(state), [], 0

    def requests(self, round_: int) -> dict[int, ClientRequest]:
        self.aggregate, self.replies, self.round = self.new_aggregate(self.state), [], round_
        payload = encode_state(self.state)
        return {c: _request(self.planner, c, payload, self.quotas) for c in sample_clients(self.config, round_)}

    def reference(self, client: int) -> State:
        return self.state

    def accept(self, client: int, state: State, num_examples: int, importance: dict[str, float] | None) -> None:
        self.aggregate.add(state, num_examples)
        if importance is not None:
            self.replies.append((importance, num_examples))

    def end_round(self) -> dict:
        """Aggregate; the fields the round's record gets (quotas trained with, next quotas, scores)."""
        self.state, self.trained_quotas = self.aggregate.result(), self.quotas
        self.quotas = self.planner.update(self.round, self.replies, self.quotas)
        return {"quotas": self.trained_quotas, "next_quotas": self.quotas, "importance": self.planner.scores}

    def models(self) -> list[tuple[State, dict[str, int]]]:
        """The trained state(s) with the quotas they were trained with: what is evaluated and scored."""
        return [(self.state, self.trained_quotas)]

    def checkpoint(self) -> tuple[State, dict[str, str]]:
        return self.state, {"quotas": json.dumps(self.quotas), "trained_quotas": json.dumps(self.trained_quotas),
                            "scores": json.dumps(self.planner.scores)}

    def restore(self, tensors: State, metadata: dict[str, str], last_trained_quotas: dict[str, int] | None) -> None:
        """`last_trained_quotas`: from the metrics, for checkpoints of smartfed 0.1 (which did not store them)."""
        self.state, self.quotas = tensors, json.loads(metadata["quotas"])
        trained = json.loads(metadata["trained_quotas"]) if "trained_quotas" in metadata else last_trained_quotas
        self.trained_quotas = trained if trained is not None else self.quotas
        self.planner.scores = json.loads(metadata["scores"])


class FoldingModel(SharedModel):
    def __init__(self, config: RunConfig, planner: QuotaPlanner, state: State, quotas: dict[str, int], new_aggregate,
                 fold: Callable[[State], None]):
        super().__init__(config, planner, state, quotas, new_aggregate)
        self.start, self.fold = state, fold
        self.folded: list[State] = []  # every round's aggregate, in order
        self.folded_bytes: list[int] = []
        self.synced: dict[int, int] = {}  # client -> how many aggregates it has folded

    def requests(self, round_: int) -> dict[int, ClientRequest]:
        requests = super().requests(round_)
        for client, request in requests.items():
            missing = sum(self.folded_bytes[self.synced.get(client, 0):])
            requests[client] = replace(request, extra_download_bytes=missing)
            self.synced[client] = len(self.folded)
        return requests

    def end_round(self) -> dict:
        fields = super().end_round()
        self._fold(self.state)
        self.state = self.start
        return fields

    def _fold(self, aggregate: State) -> None:
        self.fold(aggregate)
        self.folded.append(aggregate)
        self.folded_bytes.append(len(encode_state(aggregate)))

    def checkpoint(self) -> tuple[State, dict[str, str]]:
        state, metadata = super().checkpoint()
        folded = {f"folded{t}/{k}": v for t, aggregate in enumerate(self.folded) for k, v in aggregate.items()}
        return state | folded, metadata | {"folded": str(len(self.folded)), "synced": json.dumps(self.synced)}

    def restore(self, tensors: State, metadata: dict[str, str], last_trained_quotas: dict[str, int] | None) -> None:
        """Fold every saved aggregate again, in order, into the freshly loaded model."""
        super().restore({k: v for k, v in tensors.items() if not k.startswith("folded")}, metadata, last_trained_quotas)
        for t in range(int(metadata["folded"])):
            prefix = f"folded{t}/"
            self._fold({k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)})
        self.synced = {int(c): n for c, n in json.loads(metadata["synced"]).items()}


class OwnModels:
    sends = False

    def __init__(self, config: RunConfig, planners: dict[int, QuotaPlanner], state: State, quotas: dict[str, int]):
        self.config, self.planners = config, planners
        self.states = dict.fromkeys(planners, state)
        self.quotas, self.trained_quotas = dict.fromkeys(planners, quotas), dict.fromkeys(planners, quotas)
        self.round, self.sent = 0, {}

    def requests(self, round_: int) -> dict[int, ClientRequest]:
        self.round = round_
        requests = {c: _request(p, c, encode_state(self.states[c]), self.quotas[c]) for c, p in self.planners.items()}
        self.sent = {c: r.quotas for c, r in requests.items()}
        return requests

    def reference(self, client: int) -> State:
        return self.states[client]

    def accept(self, client: int, state: State, num_examples: int, importance: dict[str, float] | None) -> None:
        self.states[client], self.trained_quotas[client] = state, self.sent[client]
        replies = [(importance, num_examples)] if importance is not None else []
        self.quotas[client] = self.planners[client].update(self.round, replies, self.quotas[client])

    def end_round(self) -> dict:
        return {}

    def models(self) -> list[tuple[State, dict[str, int]]]:
        return [(self.states[c], self.trained_quotas[c]) for c in self.planners]

    def checkpoint(self) -> tuple[State, dict[str, str]]:
        tensors = {f"client{c}/{k}": v.clone() for c, state in self.states.items() for k, v in state.items()}  # no shared storage
        clients = {c: {"quotas": self.quotas[c], "trained_quotas": self.trained_quotas[c], "scores": self.planners[c].scores}
                   for c in self.planners}
        return tensors, {"clients": json.dumps(clients)}

    def restore(self, tensors: State, metadata: dict[str, str], last_trained_quotas: dict[str, int] | None) -> None:
        for c, saved in json.loads(metadata["clients"]).items():
            c = int(c)
            prefix = f"client{c}/"
            self.states[c] = {k.removeprefix(prefix): v for k, v in tensors.items() if k.startswith(prefix)}
            self.quotas[c], self.trained_quotas[c] = saved["quotas"], saved["trained_quotas"]
            self.planners[c].scores = saved["scores"]


def make_population(config: RunConfig, method: Method, model: nn.Module, state: State, quotas: dict[str, int],
                    sizes: dict[str, int]) -> SharedModel | FoldingModel | OwnModels:
    def planner() -> QuotaPlanner:
        return make_planner(config, method.uses_eeqa(config), sizes)

    if not method.federated:
        return OwnModels(config, {c: planner() for c in range(config.federation.num_clients)}, state, quotas)
    if method.folds_into_base:
        return FoldingModel(config, planner(), state, quotas, lambda _: method.new_aggregate(), lambda aggregate: method.fold(model, aggregate))
    a = config.aggregation
    return SharedModel(config, planner(), state, quotas, lambda reference: new_aggregate(a.rule, reference, a.trim_fraction, a.weight_cap))
