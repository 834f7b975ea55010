"""The pool builder: a real PEFT adapter folder, seeded, and resumable bit for bit."""

import json

import pytest
import torch
from safetensors.torch import load_file

import smartfed.pool.build as build
from smartfed import ExpertPool
from smartfed.pool import read_adapter
from smartfed.pool.build import BuildConfig, build_module


def config(folder, out, **kw):
    return BuildConfig(skill="math", out=str(out), model=folder, rank=4, steps=4, batch_size=2, max_length=64,
                       checkpoint_every=2, **kw)


def test_build_writes_a_peft_folder_with_a_card(tiny_model_folder, tmp_path):
    out = build_module(config(tiny_model_folder, tmp_path / "math"))
    card = json.loads((out / "smartfed_card.json").read_text())
    assert card["steps"] == 4 and card["data"]["sources"] == ["gsm8k-train"] and len(card["losses"]) == 4
    assert not (out / "checkpoints").exists()
    from smartfed import load_base_model

    model, _ = load_base_model(tiny_model_folder)
    adapter = read_adapter(out, model)
    assert adapter.r == 4 and len(adapter.matrices) == 2 * 7
    assert ExpertPool.from_adapters([out], model).num_experts == 2 * 7 * 4


def test_killed_build_resumes_to_the_same_adapter(tiny_model_folder, tmp_path, monkeypatch):
    straight = build_module(config(tiny_model_folder, tmp_path / "straight"))

    real = build._lr_factor

    def crash_at_step_3(step, cfg):
        if step == 3:
            raise KeyboardInterrupt("killed")
        return real(step, cfg)

    monkeypatch.setattr(build, "_lr_factor", crash_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        build_module(config(tiny_model_folder, tmp_path / "resumed"))
    assert [p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir()] == ["step-000002"]
    monkeypatch.setattr(build, "_lr_factor", real)
    resumed = build_module(config(tiny_model_folder, tmp_path / "resumed"))

    a, b = load_file(straight / "adapter_model.safetensors"), load_file(resumed / "adapter_model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    losses = lambda f: json.loads((f / "smartfed_card.json").read_text())["losses"]  # noqa: E731
    assert losses(straight) == losses(resumed)


def test_bad_build_config_names_the_key():
    with pytest.raises(ValueError, match="skill expected one of"):
        BuildConfig(skill="poetry", out="x")
    with pytest.raises(ValueError, match="steps expected >= 1, found 0"):
        BuildConfig(skill="math", out="x", steps=0)
