"""Federated runtime: aggregation by hand, update checks, config, the in-process run, resume, faults."""

import json
import re
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import make_config, tiny_pool
from smartfed.config import load_config, provenance
from smartfed.errors import ConfigError, RunFailed
from smartfed.fed.client import client_update
from smartfed.fed.run_folder import RunFolder
from smartfed.fed.server import UpdateRejected, aggregate, check_update
from smartfed.fed.simulation import run_simulation
from smartfed.fed.wire import decode_state, encode_state
from smartfed.methods import get_method
from smartfed.pool.resolve import adapters_digest


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
    with pytest.raises(UpdateRejected, match="num_examples"):
        check_update({"a": torch.ones(2, 3), "b": torch.ones(4)}, ref, True)  # a bool is not a count


def test_wire_round_trip_is_exact():
    state = {"x.weight": torch.randn(5, 7), "y.bias": torch.randn(3)}
    back = decode_state(encode_state(state))
    assert all(torch.equal(back[k], state[k]) for k in state)


def test_config_validation_names_the_key(tmp_path):
    with pytest.raises(ConfigError, match="unknown config key 'federation.roundz'"):
        load_config(overrides=["federation.roundz=3"])
    with pytest.raises(ConfigError, match="config key 'federation.rounds': expected int, found 'three'"):
        load_config(overrides=["federation.rounds=three"])
    with pytest.raises(ConfigError, match="config key 'router.kind': expected one of"):
        load_config(overrides=["router.kind=mlp"])
    with pytest.raises(ConfigError, match="clients_per_round': expected <= federation.num_clients=4, found 5"):
        load_config(overrides=["federation.num_clients=4", "federation.clients_per_round=5"])
    path = tmp_path / "c.toml"
    path.write_text('[federation]\nrounds = 7\n[router]\nkind = "static"\n[pool]\nadapters = ["a", "b"]\n[eeqa.device_budgets]\n3 = 1\n')
    config = load_config(str(path), ["training.lr=0.01", "run.name=x"])
    assert (config.federation.rounds, config.router.kind, config.pool.adapters, config.training.lr, config.run.name) == \
        (7, "static", ("a", "b"), 0.01, "x")
    assert config.eeqa.device_budgets == {3: 1.0}  # a table, keys are clients
    (tmp_path / "round.toml").write_text(config.to_toml())
    assert load_config(str(tmp_path / "round.toml")) == config
    (tmp_path / "bad.toml").write_text("rounds = [")
    with pytest.raises(ConfigError, match="bad.toml: not valid TOML"):
        load_config(str(tmp_path / "bad.toml"))


@pytest.mark.parametrize("override, message", [
    ("rounds=3", "config key 'rounds' is now 'federation.rounds'"),
    ("weak_clients='1:1'", "config key 'weak_clients' is now 'eeqa.device_budgets'"),
    ("federation.rounds=0", "config key 'federation.rounds': expected >= 1, found 0"),
    ("federation.rounds=true", "config key 'federation.rounds': expected int, found True"),
    ("federation.client_timeout_s=nan", "config key 'federation.client_timeout_s': expected a finite number, found nan"),
    ("federation.client_timeout_s=-1.0", "config key 'federation.client_timeout_s': expected >= 0.0, found -1.0"),
    ("run.name='../escaped_run'", "config key 'run.name': expected a plain folder name"),
    ("run.name=''", "config key 'run.name': expected a plain folder name"),
    ("eeqa.device_budgets={12=1.0}", r"config key 'eeqa.device_budgets': expected clients in \[0, 10\)"),
    ("training.lr=1.5", "config key 'training.lr': expected < 1.0, found 1.5"),
    ("nosuch.key=1", "unknown config key 'nosuch': expected one of aggregation, arrow, data, eeqa"),
    ("router.kind=module-arrow", "config key 'router.kind': expected one of linear, activation, lowrank, arrow, static, module"),
    ("aggregation.rule=median run.method=flora", "config key 'aggregation.rule': expected fedavg with run.method = 'flora'"),
    ("eval.suites=['mgsm-zh','mgsm-xx']", "config key 'eval.suites': expected one of gsm8k, .*, found 'mgsm-xx'"),
    ("eval.examples=8 eval.curve_examples=9", "config key 'eval.curve_examples': expected <= eval.examples=8, found 9"),
])
def test_bad_config_values_name_the_key_expected_and_found(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(overrides=override.split(" "))


def test_config_files_of_the_flat_format_are_refused_with_the_new_key(tmp_path):
    path = tmp_path / "flat.toml"
    path.write_text("rounds = 7\n")
    with pytest.raises(ConfigError, match=r"config key 'rounds' in .*flat.toml is now 'federation.rounds'"):
        load_config(str(path))
    path.write_bytes(b"[run]\nname = '\xff'\n")
    with pytest.raises(ConfigError, match="flat.toml: expected UTF-8 text"):
        load_config(str(path))


def test_a_run_folder_of_smartfed_0_1_still_reads(tmp_path):
    from smartfed.fed.run_folder import RunFolder

    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "config.toml").write_text('# smartfed_version = 0.1.0\nname = "old"\nmethod = "fedit"\nrounds = 4\n'
                                                    'weak_clients = "0:1,2:1.5"\nlora_rank = 4\ndata_fraction = 0.5\n')
    config = RunFolder(tmp_path / "old").config()
    assert (config.run.name, config.run.method, config.federation.rounds, config.lora.rank, config.data.fraction) == \
        ("old", "fedit", 4, 4, 0.5)
    assert config.eeqa.device_budgets == {0: 1.0, 2: 1.5}


@pytest.fixture(scope="module")
def fed_config(tiny_model_folder, tmp_path_factory):
    root = tmp_path_factory.mktemp("fed")
    pool = tiny_pool(tiny_model_folder, root, 2)
    return {"model.name": tiny_model_folder, "pool.adapters": pool, "run.out_dir": str(root / "runs"), "data.composition": "zh+math",
            "federation.num_clients": 6, "federation.clients_per_round": 3, "federation.min_clients": 2, "federation.rounds": 3,
            "training.local_steps": 2, "training.batch_size": 2, "training.max_length": 96, "eval.examples": 8, "training.lr": 0.05}


def test_simulation_writes_a_complete_run_folder(fed_config):
    config = make_config(fed_config, {"run.name": "plain"})
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
    assert metrics[-1]["cumulative_bytes_up"] == sum(m["bytes_up"] for m in metrics) == summary.cumulative_bytes_up
    header = RunFolder(folder).provenance()
    assert header["git_revision"] and load_config(str(folder / "config.toml")) == config
    assert header["git_package_changes"] == provenance()["git_package_changes"]
    assert config.training.lr and header["learning_rate"] == repr(config.training.lr)
    assert summary.final_heldout_loss != summary.initial_heldout_loss
    with pytest.raises(FileExistsError, match="already holds a run"):
        run_simulation(config)


def test_the_header_names_the_rate_a_run_trains_at_and_a_resume_under_another(fed_config, monkeypatch):
    """training.lr = 0 means the method's own rate (Method.lr), which a re-tuning moves: the header says which rate
    the rounds trained at, and a resume that trains on at another says so; LoRAHub, gradient-free, names none."""
    default = make_config(fed_config, {"run.name": "default-rate", "training.lr": 0, "federation.rounds": 1})
    method = type(get_method(default.run.method))
    run_simulation(default, log=lambda *_: None)
    first = repr(method.lr)
    assert RunFolder(default.run_dir).provenance()["learning_rate"] == first != "0"
    monkeypatch.setattr(method, "lr", method.lr * 10)  # the method re-tuned between the run and its resume
    run_simulation(default.with_values({"federation.rounds": 2}), resume=True, log=lambda *_: None)
    header = RunFolder(default.run_dir).provenance()
    assert header["learning_rate"] == first and header["resumed with learning_rate"] == f"{method.lr!r} (was {first})"
    assert load_config(str(default.run_dir / "config.toml")).federation.rounds == 2  # the body is intact
    assert get_method("lorahub").learning_rate(default) is None


def test_the_header_names_the_device_a_run_computed_on_and_each_resume_on_another(fed_config, monkeypatch):
    """model.device = auto names no machine: the header records the device a run resolved to, and a resume that
    trains elsewhere (a GPU session, then the CPU) says so; the report shows them in order. A run made before
    smartfed recorded it starts at the model.device it asked for."""
    from smartfed.fed import workspace
    from smartfed.report.runs import RunResult

    config = make_config(fed_config, {"run.name": "where", "model.device": "cpu", "federation.rounds": 1})
    run_simulation(config, log=lambda *_: None)
    assert RunFolder(config.run_dir).devices() == ["cpu"]
    monkeypatch.setattr(workspace, "device_of", lambda model: "cuda:0 (Fake GPU)")
    for rounds in (2, 3):  # the second resume, on the same device as the first, adds no line
        run_simulation(config.with_values({"federation.rounds": rounds}), resume=True, log=lambda *_: None)
    assert RunFolder(config.run_dir).devices() == ["cpu", "cuda:0 (Fake GPU)"]
    assert RunResult.read(config.run_dir).device == "cpu, then cuda:0 (Fake GPU)"
    old = RunFolder(config.run_dir.parent / "old")
    old.create(config.with_values({"model.device": "auto"}))  # as before: no device line
    assert old.devices() == []
    old.update_config(config.with_values({"model.device": "auto"}), ["resumed on device = cpu"])
    assert old.devices() == ["auto", "cpu"]


def test_provenance_says_whether_the_package_differed_from_its_revision(tmp_path):
    git = lambda *args: subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True, text=True)  # noqa: E731
    package = tmp_path / "pkg"
    assert provenance(package.parent) | {"smartfed_version": ""} == {"smartfed_version": "", "git_revision": "unknown"}  # no repository
    package.mkdir()
    (package / "a.py").write_text("x = 1\n")
    (tmp_path / "outside.txt").write_text("not the package\n")
    git("init", "-q")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "--allow-empty", "-m", "empty")
    git("add", "pkg/a.py")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "pkg")
    rev = git("rev-parse", "HEAD").stdout.strip()
    assert provenance(package)["git_revision"] == rev and provenance(package)["git_package_changes"] == "none"
    (package / "a.py").write_text("x = 2\n")
    assert provenance(package)["git_package_changes"] == "1 file differs from that revision"
    (package / "b.py").write_text("y = 1\n")
    assert provenance(package)["git_package_changes"] == "2 files differ from that revision"


def test_the_curve_scores_its_items_in_between_and_the_ends_score_all(fed_config):
    from smartfed.fed.workspace import heldout_set
    from smartfed.report.runs import RunResult

    config = make_config(fed_config, {"run.name": "curve", "eval.curve_examples": 3, "federation.rounds": 2})
    summary = run_simulation(config, log=lambda *_: None)
    metrics = [json.loads(line) for line in (config.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [len(m["heldout_items"]) for m in metrics] == [3, 3, 8]  # the last round: all 8 items; rounds 0 and 1: the first 3
    mean = lambda items: sum(t for t, _ in items) / sum(n for _, n in items)  # noqa: E731
    assert summary.final_heldout_loss == pytest.approx(mean(metrics[-1]["heldout_items"]))
    assert summary.initial_heldout_loss == pytest.approx(mean(metrics[0]["heldout_items"]))
    run = RunResult.read(config.run_dir)  # the curve: the same 3 items at every round
    assert run.losses == [(m["round"], pytest.approx(mean(m["heldout_items"][:3]))) for m in metrics]
    assert [e.id for e in heldout_set(config)][:3] == [e.id for e in heldout_set(make_config(fed_config, {"eval.examples": 3}))]
    with pytest.raises(ConfigError, match="eval.curve_examples"):
        make_config(fed_config, {"eval.curve_examples": 9})


def test_without_eeqa_every_matrix_keeps_top_k_and_uploads_only_routers(fed_config):
    config = make_config(fed_config, {"run.name": "static-k", "eeqa.enabled": False, "federation.rounds": 1})
    run_simulation(config, log=lambda *_: None)
    m = [json.loads(line) for line in (config.run_dir / "metrics.jsonl").read_text().splitlines()][1]
    router_bytes = len(encode_state(load_file(config.run_dir / "checkpoints" / "round-0001.safetensors")))
    assert set(m["next_quotas"].values()) == {2} and all(c["bytes_up"] == router_bytes for c in m["clients"])


def test_weak_devices_get_scaled_quotas(fed_config):
    config = make_config(fed_config, {"run.name": "weak", "eeqa.device_budgets": {0: 1.0, 2: 1.0, 4: 1.0}, "federation.rounds": 2})
    run_simulation(config, log=lambda *_: None)
    metrics = [json.loads(line) for line in (config.run_dir / "metrics.jsonl").read_text().splitlines()]
    num_matrices = len(metrics[0]["quotas"])
    for m in metrics[1:]:
        for c in m["clients"]:
            weak = c["client"] in (0, 2, 4)
            assert c["quota_total"] == (1 if weak else 2) * num_matrices and c["status"] == "ok"
            assert ("budget_k_avg" in c) == weak


def test_killed_run_resumes_bit_identical(fed_config):
    straight = make_config(fed_config, {"run.name": "straight"})
    run_simulation(straight, log=lambda *_: None)

    calls = []

    def killed_in_round_2(*args, **kwargs):
        calls.append(1)
        if len(calls) == 5:  # round 2, second client
            raise KeyboardInterrupt("kill -9")
        return client_update(*args, **kwargs)

    resumed = make_config(fed_config, {"run.name": "resumed"})
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
    def faulty(*args):
        result = client_update(*args)
        kind = len(faulty.seen) % 3
        faulty.seen.append(kind)
        if kind == 0:
            key = next(iter(result.state))
            result.state[key][0] = float("nan")
        elif kind == 1:
            raise RuntimeError("device crashed")
        return result

    faulty.seen = []
    config = make_config(fed_config, {"run.name": "faults", "federation.min_clients": 1})
    run_simulation(config, client_fn=faulty, log=lambda *_: None)
    metrics = [json.loads(line) for line in (config.run_dir / "metrics.jsonl").read_text().splitlines()][1:]
    statuses = [c["status"].split(":")[0] for m in metrics for c in m["clients"]]
    assert statuses == ["rejected", "dropped", "ok"] * 3
    assert all(m["accepted"] == 1 for m in metrics)

    strict = make_config(fed_config, {"run.name": "faults-strict"})
    faulty.seen = []
    with pytest.raises(RunFailed, match="round 1: 1 client updates accepted, expected at least min_clients=2"):
        run_simulation(strict, client_fn=faulty, log=lambda *_: None)


def test_report_table_and_plots(fed_config, tmp_path):
    from smartfed.report.write import write_report

    configs = [make_config(fed_config, {"run.name": f"report-{n}", "eeqa.enabled": n == "eeqa", "federation.rounds": 2})
               for n in ("eeqa", "topk")]
    for config in configs:
        run_simulation(config, log=lambda *_: None)
    text = write_report([c.run_dir for c in configs], tmp_path / "report")
    assert "| report-eeqa | smartfed | linear | on | 1 |" in text and "| report-topk | smartfed | linear | off | 1 |" in text
    assert not (tmp_path / "report" / "quotas-report-topk.png").exists()
    for png in ("heldout_loss.png", "quotas-report-eeqa.png"):
        assert (tmp_path / "report" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| report-eeqa - report-topk | 1 |" in text  # the EEQA ablation pairs the two

    import shutil  # the same run name in two folders (a coverage pool beside the default): each row says its folder

    twin = tmp_path / "other-pool" / "report-eeqa"
    shutil.copytree(configs[0].run_dir, twin, ignore=shutil.ignore_patterns("checkpoints"))
    text = write_report([configs[0].run_dir, twin], tmp_path / "report-both")
    assert "| report-eeqa | smartfed |" in text and "| other-pool/report-eeqa | smartfed |" in text  # the first folder's keep theirs
    assert (tmp_path / "report-both" / "quotas-other-pool_report-eeqa.png").is_file()
    (tmp_path / "report" / "quotas-mine.png").write_bytes(b"a figure of the user's, no report's")
    write_report([configs[1].run_dir], tmp_path / "report")  # the same folder without the EEQA run: its plot goes
    assert not (tmp_path / "report" / "quotas-report-eeqa.png").exists() and (tmp_path / "report" / "heldout_loss.png").is_file()
    assert (tmp_path / "report" / "quotas-mine.png").is_file()  # only what the earlier report.md showed is removed


def test_killed_local_run_resumes_bit_identical(fed_config):
    """`local` is a configuration of the same loop: every client's own state is checkpointed, so it resumes."""
    local = {**fed_config, "run.method": "local", "federation.rounds": 2}
    straight = make_config(local, {"run.name": "local-straight"})
    run_simulation(straight, log=lambda *_: None)
    calls = []

    def killed_in_round_2(*args):
        calls.append(1)
        if len(calls) == 8:  # round 2 (6 clients a round), second client
            raise KeyboardInterrupt("kill -9")
        return client_update(*args)

    resumed = make_config(local, {"run.name": "local-resumed"})
    with pytest.raises(KeyboardInterrupt):
        run_simulation(resumed, client_fn=killed_in_round_2, log=lambda *_: None)
    run_simulation(resumed, resume=True, log=lambda *_: None)
    a = load_file(straight.run_dir / "checkpoints" / "round-0002.safetensors")
    b = load_file(resumed.run_dir / "checkpoints" / "round-0002.safetensors")
    assert {k.split("/")[0] for k in a} == {f"client{c}" for c in range(6)} and a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((resumed.run_dir / "summary.json").read_text())["final_heldout_loss"] == pytest.approx(
        json.loads((straight.run_dir / "summary.json").read_text())["final_heldout_loss"], abs=0)


def test_a_missing_default_pool_names_the_command_that_builds_it(tmp_path, monkeypatch):
    from smartfed.errors import AdapterError
    from smartfed.pool import resolve
    from smartfed.pool.resolve import resolve_pool_file

    monkeypatch.setenv("SMARTFED_CACHE", str(tmp_path))
    monkeypatch.setattr(resolve, "SHIPPED_POOLS", tmp_path / "shipped")
    with pytest.raises(AdapterError, match=r"default pool of 'smollm2-135m-instruct' is not shipped or built.*`smartfed pool build-all --model"):
        resolve_pool_file((), "smollm2-135m-instruct", None)


def test_resume_refuses_settings_that_change_what_was_trained(fed_config, capsys):
    from smartfed.cli.main import main

    config = make_config(fed_config, {"run.name": "resume-set", "federation.rounds": 1})
    run_simulation(config, log=lambda *_: None)
    assert main(["run", "--resume", str(config.run_dir), "--set", "router.kind=activation"]) == 2
    assert "--resume --set router.kind: a resumed run keeps the settings it was trained with" in capsys.readouterr().err
    assert main(["run", "--resume", str(config.run_dir), "--set", "federation.rounds=2"]) == 0  # going on longer is fine
    assert [json.loads(line)["round"] for line in (config.run_dir / "metrics.jsonl").read_text().splitlines()] == [0, 1, 2]
    saved = (config.run_dir / "config.toml").read_text()  # the folder says what the resumed run did, and what it was
    assert RunFolder(config.run_dir).config().federation.rounds == 2
    assert "# resumed with federation.rounds = 2 (was 1)" in saved and saved.startswith("# ")


def test_a_finished_run_from_another_machine_is_no_other_setting(tmp_path):
    """A seed run on a GPU machine (device cuda, data unpacked elsewhere) and committed is finished for a queue on
    the CPU; going on with an unfinished one here would change where it computes, which is said."""
    from smartfed.compare import pending_runs

    gpu = load_config(overrides=[f"run.out_dir={tmp_path}", "run.name=router-seed1", "run.method=module-router", "run.seed=1",
                                 "model.device=cuda", f"data.dir={tmp_path / 'unpacked'}"])
    RunFolder(gpu.run_dir).create(gpu)
    here = gpu.with_values({"model.device": "auto", "data.dir": ""})
    with pytest.raises(ConfigError, match="model.device"):
        RunFolder(gpu.run_dir).changed_settings(here)
    assert RunFolder(gpu.run_dir).changed_settings(here, finished=True) == {}
    assert pending_runs([here]) == [here.run_dir]  # not finished yet
    (gpu.run_dir / "summary.json").write_text("{}")
    assert pending_runs([here]) == []
    with pytest.raises(ConfigError, match="training.lr"):  # what it trained still counts
        RunFolder(gpu.run_dir).changed_settings(here.with_values({"training.lr": 0.5}), finished=True)


def test_a_run_ignores_the_config_sections_of_other_methods(tmp_path):
    # a FedIT run recorded with LoRAHub's old search budget and another Arrow top-k is the same run under the new
    # defaults; a LoRAHub run with another budget is not
    fedit = load_config(overrides=[f"run.out_dir={tmp_path}", "run.name=fedit", "run.method=fedit", "lorahub.search_budget=4",
                                   "arrow.top_k=2"])
    RunFolder(fedit.run_dir).create(fedit)
    assert RunFolder(fedit.run_dir).changed_settings(fedit.with_values({"lorahub.search_budget": 12, "arrow.top_k": 3})) == {}
    with pytest.raises(ConfigError, match="training.batch_size"):  # what FedIT reads still counts
        RunFolder(fedit.run_dir).changed_settings(fedit.with_values({"training.batch_size": 7}))
    RunFolder(fedit.run_dir).update_config(fedit.with_values({"lorahub.search_budget": 12, "arrow.top_k": 3, "eval.every": 2}))
    saved = (fedit.run_dir / "config.toml").read_text()  # the resume's change is recorded, the unread keys kept as they were
    assert "# resumed with eval.every = 2 (was 1)" in saved and "search_budget" not in saved.split("[lorahub]")[0]
    resumed = RunFolder(fedit.run_dir).config()
    assert (resumed.lorahub.search_budget, resumed.arrow.top_k, resumed.eval.every) == (4, 2, 2)
    hub = fedit.with_values({"run.name": "lorahub", "run.method": "lorahub"})
    RunFolder(hub.run_dir).create(hub)
    with pytest.raises(ConfigError, match=r"lorahub.search_budget=12, found 4"):
        RunFolder(hub.run_dir).changed_settings(hub.with_values({"lorahub.search_budget": 12}))
    assert "lorahub.search_budget" not in fedit.in_effect() and "arrow.top_k" not in fedit.in_effect()
    assert hub.in_effect() == {k: v for k, v in hub.flat().items() if k.split(".")[0] not in ("arrow", "lora")}
    assert {k.split(".")[0] for k in fedit.in_effect()} >= {"lora", "router"}  # FedIT's own section, and one every run keeps


def test_a_comparison_rescores_a_finished_run_whose_evaluation_settings_changed(fed_config, monkeypatch):
    import shutil

    import smartfed.fed.scores as scores
    from smartfed.compare import pending_runs, run_comparison

    config = make_config(fed_config, {"run.name": "rescore", "federation.rounds": 1})
    assert pending_runs([config]) == [config.run_dir]  # not run yet
    run_simulation(config, log=lambda *_: None)
    assert pending_runs([config]) == []
    before = (config.run_dir / "metrics.jsonl").read_text()
    logs = []
    run_comparison([config], log=logs.append)
    assert logs == [f"{config.run_dir}: finished earlier, kept"]

    caps = []  # what each suite was asked to generate at most
    real_run_suite = scores.run_suite
    monkeypatch.setattr(scores, "run_suite", lambda *a, **k: caps.append(k["max_new_tokens"]) or real_run_suite(*a, **k))
    scored = make_config(fed_config, {"run.name": "rescore", "federation.rounds": 1, "eval.score_examples": 1,
                                      "eval.suites": ["mgsm-zh"], "eval.max_new_tokens": 3})
    assert pending_runs([scored]) == [config.run_dir]  # to be rescored
    run_comparison([scored], log=lambda *_: None)
    assert pending_runs([scored]) == []
    assert caps == [3]
    assert (config.run_dir / "metrics.jsonl").read_text() == before  # no round trained again
    summary = json.loads((config.run_dir / "summary.json").read_text())
    assert summary["scores"].keys() == {"mgsm-zh"} and summary["scores_wall_s"] >= 0  # a tiny model: it may round to 0.0
    saved = (config.run_dir / "config.toml").read_text()
    assert RunFolder(config.run_dir).config().eval.max_new_tokens == 3 and "# git_revision = " in saved
    assert "# resumed with eval.max_new_tokens = 3 (was 0)" in saved and "# resumed at git_revision = " in saved

    with pytest.raises(ConfigError, match=r"an earlier run with other settings \(training.lr\); expected training.lr=0.01, found 0.05"):
        run_comparison([make_config(fed_config, {"run.name": "rescore", "federation.rounds": 1, "training.lr": 0.01})])
    shutil.rmtree(config.run_dir / "checkpoints")  # a committed run folder: settings cannot change without them
    with pytest.raises(ConfigError, match=r"eval.max_new_tokens=3, expected 5, and no checkpoints"):
        run_comparison([make_config(scored.flat(), {"eval.max_new_tokens": 5})])


def test_a_torn_last_metrics_line_is_dropped_on_resume_and_named_elsewhere(fed_config):
    from smartfed.errors import SmartFedError
    from smartfed.fed.run_folder import RunFolder

    config = make_config(fed_config, {"run.name": "torn", "federation.rounds": 1})
    run_simulation(config, log=lambda *_: None)
    path = config.run_dir / "metrics.jsonl"
    path.write_text(path.read_text() + '{"round": 2, "clien')  # a kill in the middle of a write (without the atomic rename)
    with pytest.raises(SmartFedError, match=r"metrics.jsonl:3: expected a round record"):
        RunFolder(config.run_dir).metrics()
    run_simulation(config.with_values({"federation.rounds": 2}), resume=True, log=lambda *_: None)
    assert [json.loads(line)["round"] for line in path.read_text().splitlines()] == [0, 1, 2]


def test_a_nan_loss_is_written_and_read_back_as_nan(tmp_path):
    from smartfed.fed.records import RoundRecord

    back = RoundRecord.model_validate_json(RoundRecord(round=1, heldout_loss=float("nan")).to_json())
    assert back.heldout_loss != back.heldout_loss


@contextmanager
def held_by_another_process(folder):
    """`folder` held (RunFolder.writing) by a child process until the block ends and the child is killed."""
    holder = subprocess.Popen([sys.executable, "-c", "import sys; from smartfed.fed.run_folder import RunFolder\n"
                               f"with RunFolder({str(folder)!r}).writing():\n print('held', flush=True); sys.stdin.read()"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        yield
    finally:
        holder.kill()
        holder.wait()


def test_one_process_writes_a_run_folder_at_a_time(fed_config):
    """A second writer (another sweep worker, a resume of a live run) is refused or skipped, and the folder
    it would have written is left as the first writer has it; the lock goes with the process that held it."""
    from smartfed.compare import run_comparison
    from smartfed.errors import RunBusy

    config = make_config(fed_config, {"run.name": "held", "federation.rounds": 1})
    folder = config.run_dir
    folder.mkdir(parents=True)
    (folder / "metrics.jsonl").write_text("")  # what a run killed in round 0 leaves: compare would clear it
    busy = f"{folder}: another process is writing this run folder; expected it free (wait for that run, or stop it)"
    with held_by_another_process(folder):
        with pytest.raises(RunBusy, match=re.escape(busy)):
            run_simulation(config, log=lambda *_: None)
        logs = []
        assert run_comparison([config], log=logs.append) == [folder]
        assert logs == [f"{busy}: skipped here"]
        assert run_comparison([config], log=logs.append, log_busy=False) == [folder] and len(logs) == 1  # tune's polls
        with pytest.raises(RunBusy, match=re.escape(busy)):  # a tuning sweep needs every trial's result
            run_comparison([config], skip_busy=False)
        assert sorted(p.name for p in folder.iterdir()) == ["metrics.jsonl"]  # untouched
    run_comparison([config], log=lambda *_: None)  # the holder is gone, and so is its lock
    assert json.loads((folder / "summary.json").read_text())["rounds"] == 1
    with RunFolder(folder).writing(), RunFolder(folder).writing():  # re-entrant in one process
        pass


def test_compare_reports_the_finished_runs_and_names_the_busy_ones(fed_config, tmp_path, capsys):
    from smartfed.cli.main import main

    out = tmp_path / "sweep"
    pool = "[" + ",".join(f'"{p}"' for p in fed_config["pool.adapters"]) + "]"
    with held_by_another_process(out / "fedit"):
        assert main(["compare", "zh+math", "--quick", "--out", str(out), "--methods", "arrow,fedit",
                     "--set", f"model.name={fed_config['model.name']}", "--set", f"pool.adapters={pool}"]) == 0
    printed = capsys.readouterr().out
    assert f"not in the report: {out / 'fedit'} (another process is writing it" in printed
    report = (out / "report" / "report.md").read_text()
    assert "| arrow |" in report and "| fedit |" not in report


def test_where_a_folder_cannot_be_flocked_a_lock_file_beside_it_is(tmp_path, monkeypatch):
    """NFS emulates flock with fcntl locks, which need a file open for writing: a folder's flock fails with EBADF."""
    import errno
    import fcntl
    import os
    import stat

    import smartfed.fed.run_folder as run_folder

    real_flock = fcntl.flock

    def nfs_flock(fd, operation):
        if stat.S_ISDIR(os.fstat(fd).st_mode):
            raise OSError(errno.EBADF, "Bad file descriptor")
        return real_flock(fd, operation)

    monkeypatch.setattr(run_folder.fcntl, "flock", nfs_flock)
    folder = tmp_path / "runs" / "held"
    with RunFolder(folder).writing():
        lock_file = tmp_path / "runs" / ".held.lock"
        other = os.open(lock_file, os.O_RDWR)  # what a second process would do
        try:
            with pytest.raises(BlockingIOError):
                real_flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        finally:
            os.close(other)
    other = os.open(lock_file, os.O_RDWR)
    real_flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released with the block
    os.close(other)


def test_a_run_folder_cloned_elsewhere_is_the_same_run(fed_config, tmp_path):
    """A clone of the repository at another path: the committed run folders and the pool's adapter folders
    hold the same bytes under other paths. A sweep keeps the runs, a resume goes on in the clone; another
    module is another run; the same recipe rebuilt with other bytes is another run to go on with, while a
    finished run stands for the build it ran over."""
    import shutil

    from smartfed.cli.main import main
    from smartfed.compare import run_comparison

    config = make_config(fed_config, {"run.name": "cloned", "federation.rounds": 1})
    run_simulation(config, log=lambda *_: None)
    clone = tmp_path / "clone"
    shutil.copytree(config.run_dir, clone / "results" / "cloned")
    adapters = [shutil.copytree(a, clone / "pool" / Path(a).name) for a in fed_config["pool.adapters"]]
    there = make_config(fed_config, {"run.name": "cloned", "federation.rounds": 1, "run.out_dir": str(clone / "results"),
                                     "pool.adapters": [str(a) for a in adapters]})
    logs = []
    run_comparison([there], log=logs.append)
    assert logs == [f"{there.run_dir}: finished earlier, kept"]

    original = (config.run_dir / "metrics.jsonl").read_text()
    assert main(["run", "--resume", str(there.run_dir), "--set", "federation.rounds=2"]) == 0
    assert [json.loads(line)["round"] for line in (there.run_dir / "metrics.jsonl").read_text().splitlines()] == [0, 1, 2]
    assert (config.run_dir / "metrics.jsonl").read_text() == original  # the resume wrote in the clone only
    saved = (there.run_dir / "config.toml").read_text()  # where it was first written stays in its config
    assert f'out_dir = "{config.run.out_dir}"' in saved and str(fed_config["pool.adapters"][0]) in saved and str(clone) not in saved

    card = adapters[0] / "adapter_config.json"  # another alpha: another module, finished or not
    card.write_text(json.dumps(json.loads(card.read_text()) | {"lora_alpha": json.loads(card.read_text())["lora_alpha"] + 1}))
    assert RunFolder(there.run_dir).rebuilt_pool(there.with_values({"federation.rounds": 2})) is None
    with pytest.raises(ConfigError, match=r"an earlier run with other settings \(pool.adapters\)"):
        run_comparison([there.with_values({"federation.rounds": 2})], log=lambda *_: None)
    # the same paths and recipe, other bytes (a module rebuilt in place, or by the same recipe on another machine):
    # the finished run is kept, and the log names both builds; going on over the rebuilt modules is another run
    weights = Path(fed_config["pool.adapters"][0]) / "adapter_model.safetensors"
    kept = weights.read_bytes()
    recorded = RunFolder(config.run_dir).provenance()["adapters_sha256"]
    try:
        save_file({k: v * 1.001 for k, v in load_file(weights).items()}, weights)  # float rounding of another build
        found = adapters_digest([Path(a) for a in fed_config["pool.adapters"]])
        assert found != recorded and RunFolder(config.run_dir).rebuilt_pool(config) == (recorded, found)
        logs = []
        run_comparison([config], log=logs.append)
        assert logs == [f"{config.run_dir}: finished earlier, kept (over an earlier build of its pool modules: "
                        f"adapters_sha256 {recorded[:12]}…, here {found[:12]}…; its results stand for that build)"]
        with pytest.raises(ConfigError, match=r"\(pool.adapters\); expected pool.adapters='adapters_sha256 [0-9a-f]{64}'"):
            run_comparison([config.with_values({"federation.rounds": 2})], log=lambda *_: None)
        assert main(["run", "--resume", str(config.run_dir), "--set", "federation.rounds=2"]) != 0
    finally:
        weights.write_bytes(kept)  # the module-scoped pool other tests use
