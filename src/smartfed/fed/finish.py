"""The end of a run: benchmark scores if asked, and the summary (written last: it marks a finished run)."""

import json
import time

from smartfed.config import RunConfig
from smartfed.fed.records import Summary
from smartfed.fed.run_folder import RunFolder
from smartfed.fed.scores import score_run
from smartfed.fed.wire import encode_state
from smartfed.fed.workspace import ModelSide
from smartfed.methods import Method


def summarize(config: RunConfig, side: ModelSide, run: RunFolder, state_bytes: int, rounds: int) -> Summary:
    metrics = run.metrics()
    return Summary(
        method=config.run.method, rounds=rounds,
        initial_heldout_loss=metrics[0].heldout_loss,
        final_heldout_loss=next(m.heldout_loss for m in reversed(metrics) if m.heldout_loss is not None),
        cumulative_bytes_up=metrics[-1].cumulative_bytes_up, cumulative_bytes_down=metrics[-1].cumulative_bytes_down,
        state_bytes=state_bytes, pool_bytes_per_client_once=side.pool_file.stat().st_size if side.pool_file else 0,
        energy_compute_j=sum(m.energy_compute_j for m in metrics), energy_radio_j=sum(m.energy_radio_j for m in metrics),
        client_cpu_s=sum(c.cpu_s or 0.0 for m in metrics for c in m.clients),
        wall_s=round(sum(m.wall_s for m in metrics), 1),
        final_checkpoint=f"checkpoints/round-{rounds:04d}.safetensors",
    )


def finish_run(config: RunConfig, method: Method, side: ModelSide, run: RunFolder, models: list, rounds: int,
               own_models: bool = False) -> Summary:
    """`rounds`: the rounds the run played (0 for a training-free method). `own_models`: one model per
    client (`local`), each also written as checkpoints/client-NNNN.safetensors for `smartfed eval`."""
    summary = summarize(config, side, run, len(encode_state(models[0][0])), rounds)
    if own_models:
        for client, (state, quotas) in enumerate(models):
            run.save_checkpoint(client, state, {"quotas": json.dumps(quotas)}, prefix="client")
        summary.final_checkpoint = "checkpoints/client-*.safetensors"
    if config.eval.score_examples:
        began = time.time()
        summary.scores = score_run(config, method, side, run, models)
        summary.scores_wall_s = round(time.time() - began, 1)
    run.write_summary(summary)
    return summary
