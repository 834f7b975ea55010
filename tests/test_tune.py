"""`smartfed tune`: every trial on the dev split only, the same budget per trial, the choice the best dev loss."""

import json

import pytest

from conftest import tiny_pool
from smartfed.config import load_config
from smartfed.fed import workspace
from smartfed.errors import ConfigError
from smartfed.tune import EDGE, LR_GRID, LR_METHODS, ONCE, lr_trials, routing_choice, routing_trials, run_tuning


@pytest.mark.slow
def test_tuning_uses_only_the_dev_split_and_picks_the_lowest_dev_loss(tiny_model_folder, tmp_path, monkeypatch):
    pool = "[" + ",".join(f'"{p}"' for p in tiny_pool(tiny_model_folder, tmp_path, 2)) + "]"

    def refuse(*_):
        raise AssertionError("tuning read the held-out split")

    monkeypatch.setattr(workspace, "heldout_split", refuse)
    record = run_tuning("zh+math", str(tmp_path / "tune"), quick=True,
                        overrides=[f"model.name={tiny_model_folder}", f"pool.adapters={pool}"], log=lambda *_: None)
    assert [r["trial"] for r in record["routing_trials"]] == list(routing_trials())
    edges = [r for r in record["lr_trials"] if r["keys"].get("training.lr") in EDGE.values()]
    assert len(record["lr_trials"]) == len(LR_METHODS) * len(LR_GRID) + len(ONCE) + len(edges)
    for method in LR_METHODS:  # an edge trial exactly where the method's best grid rate is at an edge
        grid = [r for r in record["lr_trials"] if r["keys"]["run.method"] == method and r["keys"]["training.lr"] in LR_GRID]
        best = min(grid, key=lambda r: r["dev_loss_end"])["keys"]["training.lr"]
        assert [r["keys"]["training.lr"] for r in edges if r["keys"]["run.method"] == method] == ([EDGE[best]] if best in EDGE else [])
    for trial in record["routing_trials"] + record["lr_trials"]:
        config = load_config(str(tmp_path / "tune" / trial["trial"] / "config.toml"))
        assert config.eval.split == "dev" and config.federation.rounds == 1 and config.training.local_steps == 1
    best_routing = min(record["routing_trials"], key=lambda r: r["dev_loss_end"])["keys"]
    for method in (*LR_METHODS, *ONCE):
        mine = [r for r in record["lr_trials"] if r["keys"]["run.method"] == method]
        assert record["choice"][method] == min(mine, key=lambda r: r["dev_loss_end"])
    assert all(r["keys"]["router.gate"] == best_routing["router.gate"] for r in record["lr_trials"] if r["keys"]["run.method"] == "smartfed")
    assert json.loads((tmp_path / "tune" / "tuning.json").read_text())["choice"] == record["choice"]
    assert "| scaled | linear | arrow |" in (tmp_path / "tune" / "tuning.md").read_text()
    from smartfed.tune import finished_trials

    status = finished_trials(str(tmp_path / "tune"))  # --status reads the same
    assert status["routing_trials"] == record["routing_trials"] and status["lr_trials"] == record["lr_trials"]
    assert routing_choice(str(tmp_path / "tune")) == {k: v for k, v in record["choice"]["smartfed"]["keys"].items() if k != "training.lr"}


def test_routing_from_another_sweep_gives_every_method_the_same_trials(tmp_path):
    chosen = {"run.method": "smartfed", "router.gate": "scaled", "router.kind": "linear", "router.init": "arrow"}
    (tmp_path / "tuning.json").write_text(json.dumps({"choice": {"smartfed": {"keys": chosen | {"training.lr": 0.01}}}}))
    assert routing_choice(str(tmp_path)) == chosen
    trials = lr_trials(routing_choice(str(tmp_path)))
    per_method = [sum(1 for keys in trials.values() if keys["run.method"] == m) for m in LR_METHODS]
    assert per_method == [len(LR_GRID)] * len(LR_METHODS)
    assert all(keys | chosen == keys for keys in trials.values() if keys["run.method"] == "smartfed")


def test_routing_from_a_broken_or_unfinished_sweep_is_refused(tmp_path):
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "tuning.json").write_text('{"choice": {}}')
    with pytest.raises(ConfigError, match=r"broken/tuning.json: expected a tuning record with choice.smartfed.keys"):
        routing_choice(str(tmp_path / "broken"))
    (tmp_path / "unfinished").mkdir()
    with pytest.raises(ConfigError, match=rf"expected its {len(routing_trials())} routing trials finished, found 0"):
        routing_choice(str(tmp_path / "unfinished"))
    (tmp_path / "partial").mkdir()
    (tmp_path / "partial" / "tuning.json").write_text('{"choice": {"smartfed": {"keys": {"run.method": "smartfed", "router.gate": "scaled"}}}}')
    with pytest.raises(ConfigError, match=r"partial/tuning.json: .*expected the keys .*found none for router.kind"):
        routing_choice(str(tmp_path / "partial"))


def test_with_routing_from_only_the_rate_trials_run(tmp_path, monkeypatch):
    import smartfed.tune as tune

    chosen = {"run.method": "smartfed", "router.gate": "sigmoid", "router.kind": "activation", "router.init": "arrow"}
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "tuning.json").write_text(json.dumps({"choice": {"smartfed": {"keys": chosen | {"training.lr": 0.01}}}}))
    stages = []

    def fake_stage(base, trials, log):  # records what would run; a dev loss per trial from its position
        stages.append(trials)
        return [{"trial": n, "keys": k, "dev_loss_start": 3.0, "dev_loss_end": 2.0 - 0.01 * i} for i, (n, k) in enumerate(trials.items())]

    monkeypatch.setattr(tune, "_stage", fake_stage)
    record = run_tuning("math+code", str(tmp_path / "here"), quick=True, routing_from=str(tmp_path / "other"), log=lambda *_: None)
    assert len(stages) == 2 and stages[0] == lr_trials(chosen) and record["routing_trials"] == []
    # each method's last grid rate is its lowest here: one trial beyond the top edge for each, nothing else
    assert stages[1] == {f"lr-{m}-{EDGE[LR_GRID[-1]]:g}": lr_trials(chosen)[f"lr-{m}-{LR_GRID[-1]:g}"] | {"training.lr": EDGE[LR_GRID[-1]]}
                         for m in LR_METHODS}
    assert record["routing_from"] == str(tmp_path / "other")
    # the edge trials (2.00, 1.99, ...) end above the grid's best (2.0 - 0.01 x its position): the choice stays in the grid
    assert record["choice"]["smartfed"]["keys"] == chosen | {"training.lr": LR_GRID[-1]}


def _held_trial_stage(tiny_model_folder, tmp_path):
    """A stage of two FedIT trials whose first one another sweep holds (its folder's flock, taken on a second open
    file: not this process's hold); returns (base config, trials, the held folder, the lock's fd)."""
    import fcntl
    import os

    import smartfed.tune as tune

    pool = "[" + ",".join(f'"{p}"' for p in tiny_pool(tiny_model_folder, tmp_path, 2)) + "]"
    base = load_config(overrides=[f"model.name={tiny_model_folder}", f"pool.adapters={pool}"],
                       base={**tune.QUICK, **tune.PINNED, "data.composition": "zh+math", "run.out_dir": str(tmp_path / "tune")})
    trials = {"lr-fedit-0.001": {"run.method": "fedit", "training.lr": 1e-3}, "lr-fedit-0.01": {"run.method": "fedit", "training.lr": 1e-2}}
    held = tmp_path / "tune" / "lr-fedit-0.001"
    held.mkdir(parents=True)
    fd = os.open(held, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    return base, trials, held, fd


@pytest.mark.slow
def test_sweeps_side_by_side_share_a_stage_and_wait_for_each_others_trials(tiny_model_folder, tmp_path):
    """A trial another `smartfed tune` holds is not run here but waited for; once that process is gone (here: the
    lock released with no result, as a killed one leaves it) this sweep takes the trial over."""
    import os

    import smartfed.tune as tune

    base, trials, held, fd = _held_trial_stage(tiny_model_folder, tmp_path)
    sleeps, logged = [], []

    def other_process_dies(seconds):
        assert not (held / "summary.json").exists() and (tmp_path / "tune" / "lr-fedit-0.01" / "summary.json").is_file()
        sleeps.append(seconds)
        os.close(fd)  # the lock goes with its process; the trial is left unfinished

    results = tune._stage(base, trials, logged.append, wait=other_process_dies, poll_s=7)
    assert sleeps == [7] and "waiting for 1 trial(s) another process holds: lr-fedit-0.001" in logged
    assert sum(str(line).endswith("skipped here") for line in logged) == 1  # said once, in the first pass, not at each poll
    assert any(str(line).startswith("== lr-fedit-0.001") for line in logged)  # the taken-over trial's own log is kept
    assert [r["trial"] for r in results] == list(trials)
    assert all(r["dev_loss_end"] == json.loads((tmp_path / "tune" / r["trial"] / "summary.json").read_text())["final_heldout_loss"]
               for r in results)


@pytest.mark.slow
def test_a_trial_another_sweep_ran_with_other_settings_is_refused(tiny_model_folder, tmp_path):
    """The other process finishes the held trial, but with other settings (another --set): its loss is not this
    sweep's result."""
    import os

    import smartfed.tune as tune
    from smartfed.compare import run_comparison

    base, trials, held, fd = _held_trial_stage(tiny_model_folder, tmp_path)

    def other_sweep_finishes_it(_seconds):
        os.close(fd)
        other = base.with_values({"run.name": "lr-fedit-0.001", **trials["lr-fedit-0.001"], "training.local_steps": 2})
        run_comparison([other], log=lambda *_: None)

    with pytest.raises(ConfigError, match=r"lr-fedit-0.001/config.toml: an earlier run with other settings \(training.local_steps\)"):
        tune._stage(base, trials, lambda *_: None, wait=other_sweep_finishes_it, poll_s=1)
