"""The server's loop, one implementation for both engines.

Each round: sample clients, send them the router state and quotas (`exchange`), check every
returned update, aggregate the accepted ones, evaluate, and write the metrics line and the
checkpoint. The engines differ only in `exchange`: the simulator calls `client_update` in this
process (simulation.py), the Flower ServerApp sends Messages to SuperNodes (flower/server_app.py).
"""

import hashlib
import json
import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from smartfed.errors import SmartFedError
from smartfed.eval.generate import heldout_loss
from smartfed.experts import get_quotas, set_quotas
from smartfed.fed.client import LocalTraining
from smartfed.fed.config import RunConfig
from smartfed.fed.run_folder import RunFolder
from smartfed.fed.scores import score_run
from smartfed.fed.server import FedAvg, check_update
from smartfed.fed.trainable import load_trainable_state, trainable_state_dict
from smartfed.fed.wire import decode_state, encode_state
from smartfed.fed.workspace import Workspace
from smartfed.metrics.energy import round_energy
from smartfed.quota import allocate_quotas, device_quotas, smooth_scores


class RunFailed(SmartFedError):
    """Too few client updates were accepted in a round to go on."""


@dataclass
class ClientReply:
    """What came back from one client in one round. `upload` is None if the client was dropped."""

    client: int
    upload: bytes | None
    num_examples: int = 0
    metrics: dict = field(default_factory=dict)
    status: str = "ok"
    importance: dict[str, float] | None = None  # EEQA scores, uploaded with the router


# exchange(round, payload, {client: quotas}, clients) -> one ClientReply per client (a generator may
# yield them as they come: the server loop folds each into the running FedAvg and drops it)
Exchange = Callable[[int, bytes, dict[int, dict[str, int]], list[int]], Iterable[ClientReply]]


def sample_clients(config: RunConfig, round_: int) -> list[int]:
    return sorted(random.Random(f"{config.seed}/{round_}").sample(range(config.num_clients), config.clients_per_round))


def client_seed(config: RunConfig, round_: int, client: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{config.seed}/{round_}/{client}".encode()).digest()[:4], "big")


def training_of(config: RunConfig) -> LocalTraining:
    return LocalTraining(config.local_steps, config.batch_size, config.lr, config.max_length,
                         config.importance if config.uses_eeqa else None, config.search_budget if config.method == "lorahub" else 0)


def importance_bytes(importance: dict[str, float] | None) -> int:
    return len(json.dumps(importance).encode()) if importance else 0


class QuotaPlanner:
    """EEQA on the server: example-weighted mean of client scores, smoothed across rounds, turned into
    quotas for the full budget K = top_k * J, and scaled down for devices that announce a smaller budget."""

    def __init__(self, config: RunConfig, sizes: dict[str, int], scores: dict[str, float] | None = None):
        self.config, self.sizes, self.scores = config, sizes, scores

    def update(self, round_: int, replies: list[tuple[dict[str, float], int]], quotas: dict[str, int]) -> dict[str, int]:
        if not self.config.uses_eeqa or not replies:
            return quotas
        total = sum(n for _, n in replies)
        mean = {m: sum(s[m] * n for s, n in replies) / total for m in self.sizes}
        self.scores = smooth_scores(self.scores, mean, self.config.smoothing)
        if round_ % self.config.realloc_every:
            return quotas
        return allocate_quotas(self.scores, self.sizes, self.config.top_k * len(self.sizes), self.config.k_min)

    def for_client(self, client: int, quotas: dict[str, int]) -> dict[str, int]:
        k_avg = self.config.device_budgets.get(client)
        if k_avg is None:
            return quotas
        scores = self.scores or {m: 1.0 for m in self.sizes}
        return device_quotas(scores, self.sizes, k_avg, min(self.config.k_min, math.floor(k_avg)) or 1)


def evaluate(ws: Workspace, state, quotas: dict[str, int] | None = None) -> float:
    load_trainable_state(ws.model, state)
    if quotas:
        set_quotas(ws.model, quotas)
    return heldout_loss(ws.model, ws.tokenizer, ws.heldout, max_length=384, desc="held-out loss")


def run_federation(config: RunConfig, ws: Workspace, exchange: Exchange, resume: bool = False, log=print) -> dict:
    """Run (or resume) the rounds of `config`; return the summary written to the run folder."""
    run = RunFolder(config.run_dir)
    quotas = get_quotas(ws.model)
    sizes = {name: experts.num_experts for name, experts in ws.pool.matrices.items()}
    last = run.last_checkpoint() if resume else None
    if last is None:
        if not resume:
            run.create(config)
        state, start, scores = trainable_state_dict(ws.model), 0, None
        run.append_metrics({"round": 0, "heldout_loss": evaluate(ws, state, quotas), "quotas": quotas, "accepted": 0, "clients": [],
                            "bytes_up": 0, "bytes_down": 0, "cumulative_bytes_up": 0, "cumulative_bytes_down": 0, "wall_s": 0.0})
        run.save_checkpoint(0, state, quotas, scores)
    else:
        start, state, quotas, scores = last
    planner = QuotaPlanner(config, sizes, scores)
    cumulative_up, cumulative_down = (run.metrics()[-1][k] for k in ("cumulative_bytes_up", "cumulative_bytes_down"))

    for round_ in range(start + 1, config.rounds + 1):
        began = time.time()
        payload = encode_state(state)
        sampled = sample_clients(config, round_)
        client_quotas = {c: planner.for_client(c, quotas) for c in sampled}
        accepted, clients, fedavg = [], [], FedAvg()
        for reply in exchange(round_, payload, client_quotas, sampled):
            record = {"client": reply.client, "quota_total": sum(client_quotas[reply.client].values()),
                      "bytes_down": len(payload) + len(json.dumps(client_quotas[reply.client]).encode()),
                      "bytes_up": len(reply.upload or b"") + importance_bytes(reply.importance), "status": reply.status}
            record |= {k: reply.metrics[k] for k in ("cpu_s", "tokens") if k in reply.metrics}  # spent even if rejected
            clients.append(record)
            if reply.upload is None:
                log(f"round {round_}: client {reply.client} {reply.status}")
                continue
            try:
                received = decode_state(reply.upload)
                check_update(received, state, reply.num_examples)
            except Exception as err:  # UpdateRejected, or bytes that do not decode
                record["status"] = f"rejected: {err}"
                log(f"round {round_}: client {reply.client} update {record['status']}")
                continue
            if config.uses_eeqa and (reply.importance is None or reply.importance.keys() != sizes.keys()
                                or not all(math.isfinite(v) and v >= 0 for v in reply.importance.values())):
                record["status"] = "rejected: importance scores missing, for other matrices, or not finite and >= 0"
                log(f"round {round_}: client {reply.client} update {record['status']}")
                continue
            record |= {"num_examples": reply.num_examples, **reply.metrics, "importance": reply.importance}
            if client_quotas[reply.client] is not quotas:
                record["budget_k_avg"] = config.device_budgets[reply.client]
            fedavg.add(received, reply.num_examples)
            accepted.append((reply.num_examples, reply.metrics.get("train_loss", float("nan")), reply.importance))
        if len(accepted) < config.min_clients:
            raise RunFailed(f"round {round_}: {len(accepted)} client updates accepted, expected at least min_clients={config.min_clients}")
        state = fedavg.result()
        round_quotas = quotas
        quotas = planner.update(round_, [(imp, n) for n, _, imp in accepted], quotas)
        up, down = sum(c["bytes_up"] for c in clients), sum(c["bytes_down"] for c in clients)
        cumulative_up, cumulative_down = cumulative_up + up, cumulative_down + down
        line = {
            "round": round_, "clients": clients, "accepted": len(accepted),
            "train_loss": sum(l * n for n, l, _ in accepted) / sum(n for n, _, _ in accepted),
            "quotas": round_quotas, "next_quotas": quotas, "importance": planner.scores,
            "bytes_up": up, "bytes_down": down, "cumulative_bytes_up": cumulative_up, "cumulative_bytes_down": cumulative_down,
            **round_energy(config, clients),
        }
        if round_ % config.eval_every == 0 or round_ == config.rounds:
            line["heldout_loss"] = evaluate(ws, state, round_quotas)  # the quotas the routers were trained with
        line["wall_s"] = round(time.time() - began, 2)
        run.append_metrics(line)  # before the checkpoint: see run_folder.py
        run.save_checkpoint(round_, state, quotas, planner.scores)
        log(format_round(line))

    summary = summarize(config, ws, run, len(encode_state(state)))
    if config.score_examples:
        summary["scores"] = score_run(config, ws, run, [(state, quotas_of_round(run, config.rounds))])
    run.write_summary(summary)
    return summary


def quotas_of_round(run: RunFolder, round_: int) -> dict[str, int]:
    """The quotas the routers of `round_` were trained with (what they are evaluated with)."""
    return next(m["quotas"] for m in run.metrics() if m["round"] == round_)


def summarize(config: RunConfig, ws: Workspace, run: RunFolder, state_bytes: int) -> dict:
    metrics = run.metrics()
    return {
        "method": config.method,
        "rounds": config.rounds,
        "initial_heldout_loss": metrics[0]["heldout_loss"],
        "final_heldout_loss": next(m["heldout_loss"] for m in reversed(metrics) if "heldout_loss" in m),
        "cumulative_bytes_up": metrics[-1]["cumulative_bytes_up"], "cumulative_bytes_down": metrics[-1]["cumulative_bytes_down"],
        "state_bytes": state_bytes, "pool_bytes_per_client_once": ws.pool_file.stat().st_size if ws.pool_file else 0,
        "energy_compute_j": sum(m.get("energy_compute_j", 0.0) for m in metrics),
        "energy_radio_j": sum(m.get("energy_radio_j", 0.0) for m in metrics),
        "client_cpu_s": sum(c.get("cpu_s", 0.0) for m in metrics for c in m["clients"]),
        "wall_s": round(sum(m["wall_s"] for m in metrics), 1),
        "final_checkpoint": f"checkpoints/round-{config.rounds:04d}.safetensors",
    }


ROUND_HEADER = "| round | clients ok | train loss | held-out loss | MB up | MB down | wall s |\n|---:|---:|---:|---:|---:|---:|---:|"


def format_round(m: dict) -> str:
    held = f"{m['heldout_loss']:.4f}" if "heldout_loss" in m else "-"
    return (f"| {m['round']:>3} | {m['accepted']}/{len(m['clients'])} | {m['train_loss']:.4f} | {held} | "
            f"{m['bytes_up'] / 1e6:.2f} | {m['bytes_down'] / 1e6:.2f} | {m['wall_s']:.1f} |")
