"""Federated runtime: aggregation by hand, update checks, config, the in-process run, resume, faults."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from conftest import tiny_pool
from smartfed.fed.client import client_update
from smartfed.fed.config import ConfigError, RunConfig, load_config
from smartfed.fed.server import UpdateRejected, aggregate, check_update
from smartfed.fed.federation import RunFailed
from smartfed.fed.simulation import run_simulation
from smartfed.fed.wire import decode_state, encode_state


def test_aggregate_is_the_example_weighted_mean():
    rng = np.random.default_rng(0)
    a, b, c = (rng.normal(size=(3, 4)).astype(np.float32) for _ in range(3))
    updates = [({"w": torch.from_numpy(a)}, 10), ({"w": torch.from_numpy(b)}, 30), ({"w": torch.from_numpy(c)}, 60)]
    expected = (10 * a.astype(np.float64) + 30 * b + 60 * c) / 100
    got = aggregate(updates)["w"]
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-6)


def test_check_update_rejects_bad_updates():
    ref = {"a": torch.zeros(2, 3), "b": torch.zeros(4)}
    check_update({"a": torch.ones(2, 3), "b": torch.ones(4)}, ref, 5)
    bad = [
        ({"a": torch.full((2, 3), float("nan")), "b": torch.ones(4)}, "NaN or Inf"),
        ({"a": torch.full((2, 3), float("inf")), "b": torch.ones(4)}, "NaN or Inf"),
        ({"a": torch.ones(2, 3)}, "missing keys \\['b'\\]"),
        ({"a": torch.ones(2, 3), "b": torch.ones(4), "c": torch.ones(1)}, "unexpected keys \\['c'\\]"),
        ({"a": torch.ones(3, 2), "b": torch.ones(4)}, "key 'a': expected"),
        ({"a": torch.ones(2, 3, dtype=torch.float64), "b": torch.ones(4)}, "float64"),
    ]
    for state, message in bad:
        with pytest.raises(UpdateRejected, match=message):
            check_update(state, ref, 5)
    with pytest.raises(UpdateRejected, match="num_examples"):
        check_update({"a": torch.ones(2, 3), "b": torch.ones(4)}, ref, 0)


def test_wire_round_trip_is_exact():
    state = {"x.weight": torch.randn(5, 7), "y.bias": torch.randn(3)}
    back = decode_state(encode_state(state))
    assert all(torch.equal(back[k], state[k]) for k in state)


def test_config_validation_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key 'roundz'"):
        load_config(overrides=["roundz=3"])
    with pytest.raises(ConfigError, match="config key 'rounds': expected int, found 'three'"):
        load_config(overrides=["rounds=three"])
    with pytest.raises(ConfigError, match="config key 'router': expected one of"):
        load_config(overrides=["router=mlp"])
    with pytest.raises(ConfigError, match="clients_per_round': expected <= num_clients=4, found 5"):
        load_config(overrides=["num_clients=4", "clients_per_round=5"])
    path = tmp_path / "c.toml"
    path.write_text('rounds = 7\nrouter = "static"\npool = ["a", "b"]\n')
    config = load_config(str(path), ["lr=0.01", "name=x"])
    assert (config.rounds, config.router, config.pool, config.lr, config.name) == (7, "static", ("a", "b"), 0.01, "x")
    (tmp_path / "round.toml").write_text(config.to_toml())
    assert load_config(str(tmp_path / "round.toml")) == config
    (tmp_path / "bad.toml").write_text("rounds = [")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_config(str(tmp_path / "bad.toml"))


@pytest.fixture(scope="module")
def fed_config(tiny_model_folder, tmp_path_factory):
    root = tmp_path_factory.mktemp("fed")
    pool = tiny_pool(tiny_model_folder, root, 2)
    return dict(model=tiny_model_folder, pool=pool, out_dir=str(root / "runs"), composition="zh+math", num_clients=6,
                clients_per_round=3, min_clients=2, rounds=3, local_steps=2, batch_size=2, max_length=96, eval_examples=8, lr=0.05)


def test_simulation_writes_a_complete_run_folder(fed_config):
    config = RunConfig(name="plain", **fed_config)
    summary = run_simulation(config, log=lambda *_: None)
    folder = config.run_dir
    metrics = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    assert [m["round"] for m in metrics] == [0, 1, 2, 3]
    router_bytes = len(encode_state(load_file(folder / "checkpoints" / "round-0003.safetensors")))
    importance_bytes = lambda c: len(json.dumps(c["importance"]).encode())  # noqa: E731  EEQA scores ride along
    for m in metrics[1:]:
        assert m["accepted"] == 3 and all(c["status"] == "ok" and c["bytes_up"] == router_bytes + importance_bytes(c) for c in m["clients"])
        assert m["bytes_up"] == sum(router_bytes + importance_bytes(c) for c in m["clients"]) and np.isfinite(m["heldout_loss"])
        assert sum(m["next_quotas"].values()) == 2 * len(m["next_quotas"])  # EEQA keeps the budget K = top_k * J
    assert metrics[-1]["cumulative_bytes_up"] == sum(m["bytes_up"] for m in metrics) == summary["cumulative_bytes_up"]
    assert "git_revision" in (folder / "config.toml").read_text() and load_config(str(folder / "config.toml")) == config
    assert summary["final_heldout_loss"] != summary["initial_heldout_loss"]
    with pytest.raises(FileExistsError, match="already holds a run"):
        run_simulation(config)


def test_without_eeqa_every_matrix_keeps_top_k_and_uploads_only_routers(fed_config):
    config = RunConfig(name="static-k", eeqa=False, rounds=1, **{k: v for k, v in fed_config.items() if k != "rounds"})
    run_simulation(config, log=lambda *_: None)
    m = [json.loads(line) for line in (config.run_dir / "metrics.jsonl").read_text().splitlines()][1]
    router_bytes = len(encode_state(load_file(config.run_dir / "checkpoints" / "round-0001.safetensors")))
    assert set(m["next_quotas"].values()) == {2} and all(c["bytes_up"] == router_bytes for c in m["clients"])


def test_weak_devices_get_scaled_quotas(fed_config):
    config = RunConfig(name="weak", weak_clients="0:1,2:1,4:1", rounds=2, **{k: v for k, v in fed_config.items() if k != "rounds"})
    run_simulation(config, log=lambda *_: None)
    metrics = [json.loads(line) for line in (config.run_dir / "metrics.jsonl").read_text().splitlines()]
    num_matrices = len(metrics[0]["quotas"])
    for m in metrics[1:]:
        for c in m["clients"]:
            weak = c["client"] in (0, 2, 4)
            assert c["quota_total"] == (1 if weak else 2) * num_matrices and c["status"] == "ok"
            assert ("budget_k_avg" in c) == weak


def test_killed_run_resumes_bit_identical(fed_config):
    straight = RunConfig(name="straight", **fed_config)
    run_simulation(straight, log=lambda *_: None)

    calls = []

    def killed_in_round_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:  # round 2, second client
            raise KeyboardInterrupt("kill -9")
        return client_update(*args, **kwargs)

    resumed = RunConfig(name="resumed", **fed_config)
    with pytest.raises(KeyboardInterrupt):
        run_simulation(resumed, client_fn=killed_in_round_2, log=lambda *_: None)
    assert sorted(p.name for p in (resumed.run_dir / "checkpoints").iterdir())[-1] == "round-0001.safetensors"
    run_simulation(resumed, resume=True, log=lambda *_: None)
    a = load_file(straight.run_dir / "checkpoints" / "round-0003.safetensors")
    b = load_file(resumed.run_dir / "checkpoints" / "round-0003.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    rounds = [json.loads(line)["round"] for line in (resumed.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert rounds == [0, 1, 2, 3]


def test_faulty_clients_are_dropped_and_the_round_goes_on(fed_config):
    def faulty(model, tokenizer, state, quotas, examples, training, seed):
        result = client_update(model, tokenizer, state, quotas, examples, training, seed)
        kind = len(faulty.seen) % 3
        faulty.seen.append(kind)
        if kind == 0:
            key = next(iter(result.state))
            result.state[key][0] = float("nan")
        elif kind == 1:
            raise RuntimeError("device crashed")
        return result

    faulty.seen = []
    config = RunConfig(name="faults", **(fed_config | {"min_clients": 1}))
    run_simulation(config, client_fn=faulty, log=lambda *_: None)
    metrics = [json.loads(line) for line in (config.run_dir / "metrics.jsonl").read_text().splitlines()][1:]
    statuses = [c["status"].split(":")[0] for m in metrics for c in m["clients"]]
    assert statuses == ["rejected", "dropped", "ok"] * 3
    assert all(m["accepted"] == 1 for m in metrics)

    strict = RunConfig(name="faults-strict", **fed_config)
    faulty.seen = []
    with pytest.raises(RunFailed, match="round 1: 1 client updates accepted, expected at least min_clients=2"):
        run_simulation(strict, client_fn=faulty, log=lambda *_: None)


def test_report_table_and_plots(fed_config, tmp_path):
    from smartfed.report.runs import write_report

    configs = [RunConfig(name=f"report-{n}", eeqa=n == "eeqa", rounds=2, **{k: v for k, v in fed_config.items() if k != "rounds"})
               for n in ("eeqa", "topk")]
    for config in configs:
        run_simulation(config, log=lambda *_: None)
    text = write_report([c.run_dir for c in configs], tmp_path / "report")
    assert "| report-eeqa | smartfed | linear | on | 1 |" in text and "| report-topk | smartfed | linear | off | 1 |" in text
    assert not (tmp_path / "report" / "quotas-report-topk.png").exists()
    for png in ("heldout_loss.png", "quotas-report-eeqa.png"):
        assert (tmp_path / "report" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
