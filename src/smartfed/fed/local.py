"""The `local` baseline: every client trains alone on its own data, nothing is sent.

Each client runs `rounds` local rounds of the same `client_update` (same steps, seeds and quotas as
a federated client would), starting from the same initial state. The held-out loss of a round is
the mean over clients of their own model's loss; nothing crosses the network, so bytes are zero.
With EEQA on, a client re-allocates its quotas from its own importance scores only.
"""

import time

from smartfed.experts import get_quotas
from smartfed.fed.client import client_update
from smartfed.fed.config import RunConfig
from smartfed.fed.federation import QuotaPlanner, client_seed, evaluate, format_round, summarize, training_of
from smartfed.fed.run_folder import RunFolder
from smartfed.fed.scores import score_run
from smartfed.fed.trainable import trainable_state_dict
from smartfed.fed.wire import encode_state
from smartfed.fed.workspace import Workspace
from smartfed.metrics.energy import round_energy


def run_local(config: RunConfig, ws: Workspace, log=print) -> dict:
    """Train every client alone for `config.rounds` rounds; write the run folder; return the summary."""
    run = RunFolder(config.run_dir)
    run.create(config)
    initial, initial_quotas = trainable_state_dict(ws.model), get_quotas(ws.model)
    sizes = {name: experts.num_experts for name, experts in ws.pool.matrices.items()}
    run.append_metrics({"round": 0, "heldout_loss": evaluate(ws, initial, initial_quotas), "quotas": initial_quotas, "accepted": 0,
                        "clients": [], "bytes_up": 0, "bytes_down": 0, "cumulative_bytes_up": 0, "cumulative_bytes_down": 0, "wall_s": 0.0})
    trained = {c: (initial, initial_quotas) for c in range(config.num_clients)}  # client -> (state, quotas it was trained with)
    next_quotas = dict.fromkeys(range(config.num_clients), initial_quotas)
    planners = {c: QuotaPlanner(config, sizes) for c in range(config.num_clients)}
    for round_ in range(1, config.rounds + 1):
        began, clients = time.time(), []
        for c in range(config.num_clients):
            quotas = planners[c].for_client(c, next_quotas[c])  # a weak device's smaller budget
            result = client_update(ws.model, ws.tokenizer, trained[c][0], quotas, ws.client_data[c], training_of(config),
                                   client_seed(config, round_, c))
            clients.append({"client": c, "status": "ok", "num_examples": result.num_examples, "bytes_up": 0, "bytes_down": 0,
                            "quota_total": sum(quotas.values()), **result.metrics})
            trained[c] = (result.state, quotas)
            next_quotas[c] = planners[c].update(round_, [(result.importance, result.num_examples)] if result.importance else [], next_quotas[c])
        line = {"round": round_, "clients": clients, "accepted": len(clients),
                "train_loss": sum(c["train_loss"] * c["num_examples"] for c in clients) / sum(c["num_examples"] for c in clients),
                "bytes_up": 0, "bytes_down": 0, "cumulative_bytes_up": 0, "cumulative_bytes_down": 0,
                **round_energy(config, clients)}
        if round_ % config.eval_every == 0 or round_ == config.rounds:
            losses = [evaluate(ws, *trained[c]) for c in range(config.num_clients)]
            line["heldout_loss"] = sum(losses) / len(losses)
            line["heldout_loss_per_client"] = losses
        line["wall_s"] = round(time.time() - began, 2)
        run.append_metrics(line)
        log(format_round(line))
    for c, (state, quotas) in trained.items():
        run.save_checkpoint(c, state, quotas, planners[c].scores, prefix="client")
    summary = summarize(config, ws, run, len(encode_state(initial)))
    summary["final_checkpoint"] = "checkpoints/client-*.safetensors"
    if config.score_examples:
        summary["scores"] = score_run(config, ws, run, [trained[c] for c in range(config.num_clients)])
    run.write_summary(summary)
    return summary
