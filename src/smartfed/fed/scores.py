"""Benchmark scores of a finished run: the composition's suites, scored once after the last round."""

import json

from smartfed.config import RunConfig
from smartfed.data.compositions import COMPOSITIONS
from smartfed.eval.sandbox import isolation, require_isolation
from smartfed.eval.suites import run_suite
from smartfed.experts import set_quotas
from smartfed.fed.run_folder import RunFolder
from smartfed.fed.workspace import ModelSide
from smartfed.io import atomic_write_text
from smartfed.methods import Method

SCORES = "scores.json"


def score_run(config: RunConfig, method: Method, side: ModelSide, run: RunFolder, models: list[tuple[dict, dict[str, int]]]) -> dict[str, float]:
    """{suite: score} on the first `eval.score_examples` items of each suite of `eval.suites` (default: the composition's).

    One (state, quotas) is the global model. Several (clients that keep their own models) share each
    suite's items round-robin, so every item is answered once and the score estimates the mean
    accuracy of a client's own model; with fewer items than clients only the first `score_examples`
    clients answer. Every output goes to scores.json.
    """
    n = config.eval.score_examples
    if config.eval.require_isolation:
        require_isolation()
    print(f"benchmark scores: generated code runs with {isolation()}")
    report = {}
    for suite in config.eval.suites or COMPOSITIONS[config.data.composition].eval_suites:
        items = []
        for shard, (state, quotas) in enumerate(models[:n]):
            method.load_state_dict(side.model, state)
            set_quotas(side.model, quotas)
            side.model.eval()
            result = run_suite(side.model, side.tokenizer, suite, n, data_dir=config.data.dir or None, shard=(shard, min(len(models), n)),
                               max_new_tokens=config.eval.max_new_tokens)
            shards = min(len(models), n)
            items += [item | {"model": shard, "index": shard + j * shards} for j, item in enumerate(result.items)]
        items.sort(key=lambda item: item["index"])  # the suite's order, whichever model answered: items pair across runs
        report[suite] = {"n": len(items), "score": sum(i["correct"] for i in items) / max(len(items), 1), "items": items}
    record = {"code_sandbox_isolation": isolation(), "suites": report}
    atomic_write_text(run.path / SCORES, json.dumps(record, ensure_ascii=False, indent=1))
    return {suite: r["score"] for suite, r in report.items()}
