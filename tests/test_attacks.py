"""One malicious client of five must not own the global model or end the run (server-side bounds and
robust aggregation), and Flower nodes cannot claim a partition twice or announce an unbounded budget."""

import json
import math

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import make_config, tiny_pool
from smartfed.fed.client import ClientResult, client_seed, client_update
from smartfed.fed.server import new_aggregate, state_norm
from smartfed.fed.simulation import run_simulation
from smartfed.flower.server_app import bounded_budgets

ATTACKER = 2


@pytest.fixture(scope="module")
def five(tiny_model_folder, tmp_path_factory):
    root = tmp_path_factory.mktemp("attacks")
    pool = tiny_pool(tiny_model_folder, root, 2)
    return {"model.name": tiny_model_folder, "pool.adapters": pool, "run.out_dir": str(root / "runs"), "data.composition": "zh+math",
            "federation.num_clients": 5, "federation.clients_per_round": 5, "federation.min_clients": 3, "federation.rounds": 2,
            "training.local_steps": 2, "training.batch_size": 2, "training.max_length": 64, "eval.examples": 8, "training.lr": 0.05}


def attacking(change, attacker_seeds: set[int]):
    """A client_fn whose client ATTACKER (known by its seeds) replies with change(result, start state)."""
    def client_fn(config, model, tokenizer, state, quotas, examples, seed):
        result = client_update(config, model, tokenizer, state, quotas, examples, seed)
        return change(result, state) if seed in attacker_seeds else result
    return client_fn


def run(five, name, change=None, **keys):
    config = make_config(five, {"run.name": name, **keys})
    seeds = {client_seed(config, r, ATTACKER) for r in range(1, config.federation.rounds + 1)}
    summary = run_simulation(config, client_fn=attacking(change, seeds) if change else client_update, log=lambda *_: None)
    metrics = [json.loads(line) for line in (config.run_dir / "metrics.jsonl").read_text().splitlines()]
    return config, summary, metrics


def statuses(metrics, client=ATTACKER):
    return [c["status"] for m in metrics[1:] for c in m["clients"] if c["client"] == client]


def scaled(factor):
    return lambda r, _: ClientResult({k: v * factor for k, v in r.state.items()}, r.num_examples, r.metrics, r.importance)


@pytest.mark.parametrize("factor", [1e30, 3e38])
def test_huge_finite_routers_are_rejected_and_the_global_state_stays_bounded(five, factor):
    config, summary, metrics = run(five, f"huge-{factor:g}", scaled(factor))
    assert all(s.startswith("rejected: update norm expected <=") for s in statuses(metrics)), statuses(metrics)
    assert all(m["accepted"] == 4 for m in metrics[1:]) and math.isfinite(summary.final_heldout_loss)
    final = load_file(config.run_dir / "checkpoints" / "round-0002.safetensors")
    start = load_file(config.run_dir / "checkpoints" / "round-0000.safetensors")
    assert state_norm(final) <= state_norm(start) + 2 * config.aggregation.max_update_norm * max(state_norm(start), 1.0)


@pytest.mark.parametrize("importance, why", [(1.7e308, "importance scores"), (1e6, "importance scores")])
def test_overflowing_or_steering_importance_is_rejected(five, importance, why):
    def steer(result, _):
        scores = dict(result.importance)
        scores[next(iter(scores))] = importance
        return ClientResult(result.state, result.num_examples, result.metrics, scores)

    _, summary, metrics = run(five, f"importance-{importance:g}", steer)
    assert all(s.startswith(f"rejected: {why}") for s in statuses(metrics)) and math.isfinite(summary.final_heldout_loss)


@pytest.mark.parametrize("claim", [10**15, True, 0])
def test_self_reported_example_counts_are_bounded(five, claim):
    _, _, metrics = run(five, f"claims-{claim}", lambda r, _: ClientResult(r.state, claim, r.metrics, r.importance))
    assert all(s.startswith("rejected: num_examples expected an int in [1, 1000000]") for s in statuses(metrics))


def test_median_importance_is_not_steered_by_one_client(five):
    """A score under the cap but 1,000x the others: the mean hands that matrix every slot it can hold, the median does not."""
    def steer(result, _):
        scores = dict(result.importance)
        scores[target] = 1e3
        return ClientResult(result.state, result.num_examples, result.metrics, scores)

    _, _, honest = run(five, "steer-none")
    target = min(honest[1]["next_quotas"], key=honest[1]["next_quotas"].get)  # the matrix honest clients rate lowest
    _, _, mean = run(five, "steer-mean", steer)
    _, _, median = run(five, "steer-median", steer, **{"aggregation.rule": "median"})
    assert mean[1]["next_quotas"][target] > honest[1]["next_quotas"][target]
    assert median[1]["next_quotas"][target] == honest[1]["next_quotas"][target]


def test_trimmed_mean_keeps_the_loss_of_the_run_without_the_attacker(five):
    """An attacker under the norm cap (its update reversed and scaled 20x): FedAvg takes it in, trimmed-mean
    cuts it; margin 0.05 nats of held-out loss against the run without the attacker."""
    def reverse(result, start):
        return ClientResult({k: start[k] - 20 * (v - start[k]) for k, v in result.state.items()}, result.num_examples, result.metrics,
                            result.importance)

    keys = {"aggregation.rule": "trimmed-mean", "aggregation.max_update_norm": 1e6}
    _, clean, _ = run(five, "trim-clean", **keys)
    _, trimmed, _ = run(five, "trim-attacked", reverse, **keys)
    _, averaged, _ = run(five, "avg-attacked", reverse, **{"aggregation.max_update_norm": 1e6})
    assert abs(trimmed.final_heldout_loss - clean.final_heldout_loss) < 0.05
    assert abs(averaged.final_heldout_loss - clean.final_heldout_loss) > abs(trimmed.final_heldout_loss - clean.final_heldout_loss)


def test_robust_rules_against_values_worked_out_by_hand():
    reference = {"w": torch.zeros(3)}
    updates = [({"w": torch.tensor([1.0, 2.0, 3.0])}, 1), ({"w": torch.tensor([2.0, 2.0, 2.0])}, 1),
               ({"w": torch.tensor([3.0, 100.0, -5.0])}, 1), ({"w": torch.tensor([4.0, 1.0, 0.0])}, 1),
               ({"w": torch.tensor([5.0, 3.0, 1.0])}, 1)]
    results = {}
    for rule in ("median", "trimmed-mean", "clipped-fedavg"):
        aggregate = new_aggregate(rule, reference, trim_fraction=0.2, weight_cap=2.0)
        for state, n in updates:
            aggregate.add(state, n)
        results[rule] = aggregate.result()["w"].numpy()
    np.testing.assert_allclose(results["median"], [3.0, 2.0, 1.0])
    np.testing.assert_allclose(results["trimmed-mean"], [3.0, (2 + 2 + 3) / 3, (0 + 1 + 2) / 3], rtol=1e-6)
    norms = [np.linalg.norm(s["w"].numpy()) for s, _ in updates]
    clip = np.median(norms)
    expected = np.mean([s["w"].numpy() * min(1.0, clip / n) for (s, _), n in zip(updates, norms)], axis=0)
    np.testing.assert_allclose(results["clipped-fedavg"], expected, rtol=1e-6)


def test_clipped_fedavg_caps_a_clients_weight():
    reference = {"w": torch.zeros(1)}
    aggregate = new_aggregate("clipped-fedavg", reference, weight_cap=2.0)
    for value, n in ((1.0, 10), (1.0, 10), (1.0, 10**6)):  # the same direction and norm: only the weights differ
        aggregate.add({"w": torch.tensor([value])}, n)
    np.testing.assert_allclose(aggregate.result()["w"].numpy(), [1.0])
    aggregate = new_aggregate("clipped-fedavg", reference, weight_cap=2.0)
    for value, n in ((1.0, 10), (1.0, 10), (-1.0, 10**6)):
        aggregate.add({"w": torch.tensor([value])}, n)
    np.testing.assert_allclose(aggregate.result()["w"].numpy(), [(10 + 10 - 20) / 40])  # the big claim weighs 2 x median = 20


def test_flower_node_budgets_are_bounded():
    assert bounded_budgets({0: 1.0, 1: 50.0}, top_k=2) == {0: 1.0, 1: 2.0}
    for bad in (0.0, -1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="partition 3: k-avg expected a number in \\(0, 2\\]"):
            bounded_budgets({3: bad}, top_k=2)
