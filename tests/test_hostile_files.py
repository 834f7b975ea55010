"""Files: no stale or unchecked pool, clear errors for broken adapter configs, no bad write, resume past a torn checkpoint."""

import json
import os
import shutil
import stat

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import make_adapter, make_config, tiny_llama, tiny_pool
from smartfed.data import DataError
from smartfed.data.partition import partition
from smartfed.errors import AdapterError
from smartfed.fed.simulation import run_simulation
from smartfed.io import shown_path
from smartfed.pool import ExpertPool, read_adapter
from smartfed.pool.resolve import default_pool_dir, resolve_pool_file


@pytest.fixture
def adapter(tmp_path):
    base = tiny_llama()
    return base, make_adapter(base, tmp_path / "a" / "m1", 0, r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])


def _edit_config(folder, **changes):
    path = folder / "adapter_config.json"
    config = json.loads(path.read_text()) | changes
    path.write_text(json.dumps(config))  # json writes NaN as NaN, as a careless exporter would


def test_the_pool_cache_follows_content_not_folder_names(adapter, tmp_path):
    base, folder = adapter
    first = resolve_pool_file((str(folder),), "tiny", base)
    # the cache, never beside the adapters (a package's shipped folder)
    assert first.parent == default_pool_dir("tiny") and not list(folder.parent.glob("pool-*"))
    other = make_adapter(base, tmp_path / "b" / "m1", 1, r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"])  # same name
    assert resolve_pool_file((str(other),), "tiny", base).name != first.name
    _edit_config(folder, lora_alpha=16)  # an edited alpha: a new pool, with the new scale
    edited = resolve_pool_file((str(folder),), "tiny", base)
    assert edited != first
    scale = lambda path: next(iter(ExpertPool.load(path).matrices.values())).scale[0].item()  # noqa: E731
    assert scale(edited) == 2 * scale(first)


@pytest.mark.parametrize("changes, message", [
    ({"lora_alpha": float("nan")}, r"key 'lora_alpha' expected a finite number in \(0, 100000\], found nan"),
    ({"lora_alpha": 1e300}, r"key 'lora_alpha' expected a finite number in \(0, 100000\], found 1e\+300"),
    ({"target_modules": 5}, "key 'target_modules' expected a list of module names or a regex string, found 5"),
    ({"rank_pattern": ["q_proj", 2]}, "key 'rank_pattern' expected an object of module pattern -> positive number"),
    ({"layers_to_transform": "0"}, "key 'layers_to_transform' expected an int or a list of ints, found '0'"),
])
def test_broken_configs_name_the_file_key_expected_and_found(adapter, changes, message):
    base, folder = adapter
    _edit_config(folder, **changes)
    with pytest.raises(AdapterError, match=message):
        read_adapter(folder, base)


def test_absurd_weights_are_refused_at_load(adapter):
    base, folder = adapter
    weights = load_file(folder / "adapter_model.safetensors")
    save_file({k: v * 1e37 if "lora_B" in k else v for k, v in weights.items()}, folder / "adapter_model.safetensors")
    with pytest.raises(AdapterError, match=r"lora_B|expected LoRA weights of magnitude <= 1000"):
        read_adapter(folder, base)


def test_bin_only_adapters_and_missing_or_looping_folders(adapter, tmp_path):
    base, folder = adapter
    weights = load_file(folder / "adapter_model.safetensors")
    torch.save(weights, folder / "adapter_model.bin")
    (folder / "adapter_model.safetensors").unlink()
    assert resolve_pool_file((str(folder),), "tiny", base).is_file()
    with pytest.raises(AdapterError, match="adapter folder .*nowhere: not found"):
        resolve_pool_file((str(tmp_path / "nowhere"),), "tiny", base)
    loop = tmp_path / "loop"
    loop.symlink_to(loop)
    with pytest.raises(AdapterError, match="adapter folder .*loop: not found"):
        resolve_pool_file((str(loop),), "tiny", base)


def test_pool_inspect_names_a_file_with_invalid_json(adapter, tiny_model_folder, capsys):
    from smartfed.cli.main import main

    _, folder = adapter
    (folder / "adapter_config.json").write_text("{not json")
    assert main(["pool", "inspect", str(folder), "--model", tiny_model_folder]) == 0
    row = capsys.readouterr().out.splitlines()[-1]
    assert "| no: " in row and "adapter_config.json: not valid JSON" in row


@pytest.mark.parametrize("scheme", ["dirichlet:source:-1", "dirichlet:source:nan", "pathological:source:0", "pathological:source:x"])
def test_partition_parameters_are_checked(scheme):
    with pytest.raises(DataError, match=f"partition scheme '{scheme}'"):
        partition([], scheme, 2)


@pytest.fixture
def small_run(tiny_model_folder, tmp_path):
    pool = tiny_pool(tiny_model_folder, tmp_path, 2)
    return {"model.name": tiny_model_folder, "pool.adapters": pool, "run.out_dir": str(tmp_path / "runs"), "data.composition": "zh+math",
            "federation.num_clients": 3, "federation.clients_per_round": 2, "federation.min_clients": 1, "federation.rounds": 2,
            "training.local_steps": 1, "training.batch_size": 2, "training.max_length": 64, "eval.examples": 4}


@pytest.mark.parametrize("damage", ["truncate", "empty"])
def test_resume_past_a_torn_last_checkpoint(small_run, damage):
    config = make_config(small_run, {"run.name": f"torn-{damage}"})
    run_simulation(config, log=lambda *_: None)
    last = config.run_dir / "checkpoints" / "round-0002.safetensors"
    last.write_bytes(last.read_bytes()[:100] if damage == "truncate" else b"")
    (config.run_dir / "summary.json").unlink()
    said = []
    run_simulation(config, resume=True, log=said.append)
    assert any("round-0002.safetensors: unreadable checkpoint" in line and "resuming from the one before it" in line for line in said)
    assert [json.loads(line)["round"] for line in (config.run_dir / "metrics.jsonl").read_text().splitlines()] == [0, 1, 2]
    assert load_file(last)  # rewritten whole


def test_run_files_get_the_umask_mode_and_the_pool_hash(small_run):
    config = make_config(small_run, {"run.name": "modes", "federation.rounds": 1})
    old = os.umask(0o022)
    try:
        run_simulation(config, log=lambda *_: None)
    finally:
        os.umask(old)
    for name in ("config.toml", "metrics.jsonl", "summary.json", "checkpoints/round-0001.safetensors"):
        assert stat.S_IMODE((config.run_dir / name).stat().st_mode) == 0o644, name
    assert "# adapters_sha256 = " in (config.run_dir / "config.toml").read_text()


def test_shown_paths_leave_out_this_machines_home_and_working_folder(tmp_path, monkeypatch):
    home, work = tmp_path / "home", tmp_path / "home" / "repo"
    work.mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(work)
    assert shown_path(work / "docs" / "a.md") == "docs/a.md"
    assert shown_path("docs/a.md") == "docs/a.md"
    assert shown_path(home / ".cache" / "pool.safetensors") == "~/.cache/pool.safetensors"
    assert shown_path(tmp_path / "elsewhere") == str(tmp_path / "elsewhere")
    assert shown_path(home) == str(home)  # the folder itself stays absolute: "~/" alone would read as empty
    assert shown_path(work / ".." / ".cache" / "p") == "~/.cache/p"  # `..` resolved before the comparison
    monkeypatch.chdir(tmp_path)  # the working folder above home: the deeper root (home) names the path
    assert shown_path(home / ".cache" / "p") == "~/.cache/p"
    monkeypatch.chdir("/")  # `/` is no root: nothing is shown relative to it
    assert shown_path(tmp_path / "elsewhere") == str(tmp_path / "elsewhere")


def test_a_top_k_larger_than_any_matrix_is_a_config_error(small_run):
    from smartfed.errors import ConfigError

    with pytest.raises(ConfigError, match=r"config key 'router.top_k': expected an int in \[1, 8\]"):
        run_simulation(make_config(small_run, {"run.name": "big-k", "router.top_k": 1000}), log=lambda *_: None)
