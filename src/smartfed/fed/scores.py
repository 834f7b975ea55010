"""Benchmark scores of a finished run: the composition's suites, scored once after the last round."""

import json

from smartfed.data.compositions import COMPOSITIONS
from smartfed.eval.suites import run_suite
from smartfed.experts import set_quotas
from smartfed.fed.config import RunConfig
from smartfed.fed.run_folder import RunFolder
from smartfed.fed.trainable import load_trainable_state
from smartfed.fed.workspace import Workspace
from smartfed.io import atomic_write_text

SCORES = "scores.json"


def score_run(config: RunConfig, ws: Workspace, run: RunFolder, states: list[tuple[dict, dict[str, int]]]) -> dict[str, float]:
    """{suite: score} on the first `config.score_examples` items of each suite of the composition.

    One (state, quotas) is the global model. Several (method `local`: one per client) share each
    suite's items round-robin, so every item is answered once and the score estimates the mean
    accuracy of a client's own model; with fewer items than clients only the first `score_examples`
    clients answer. Every output goes to scores.json.
    """
    report = {}
    for suite in COMPOSITIONS[config.composition].eval_suites:
        items = []
        for shard, (state, quotas) in enumerate(states[: config.score_examples]):
            load_trainable_state(ws.model, state)
            set_quotas(ws.model, quotas)
            ws.model.eval()
            result = run_suite(ws.model, ws.tokenizer, suite, config.score_examples, data_dir=config.data_dir or None,
                               shard=(shard, min(len(states), config.score_examples)))
            items += [item | {"model": shard} for item in result.items]
        report[suite] = {"n": len(items), "score": sum(i["correct"] for i in items) / max(len(items), 1), "items": items}
    atomic_write_text(run.path / SCORES, json.dumps(report, ensure_ascii=False, indent=1))
    return {suite: r["score"] for suite, r in report.items()}
