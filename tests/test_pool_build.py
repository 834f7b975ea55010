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
    targets = json.loads((out / "adapter_config.json").read_text())["target_modules"]
    assert targets == sorted(build.LLAMA_LINEAR_TYPES)  # not the set's hash order: the same bytes in every process
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


def test_margins_are_each_modules_own_peft_loss_on_its_skills_dev_items(tiny_model_folder, tmp_path, capsys):
    import copy
    from pathlib import Path

    from peft import PeftModel

    from smartfed import load_base_model
    from smartfed.cli.main import main
    from smartfed.data import composition_splits
    from smartfed.eval.generate import heldout_loss
    from conftest import tiny_pool

    for label in ("old", "new"):  # two pools, each with a module for zh and for math
        for skill, folder in zip(("zh", "math"), tiny_pool(tiny_model_folder, tmp_path / label, 2)):
            Path(folder).rename(tmp_path / label / skill)
    out = tmp_path / "margins"
    assert main(["pool", "margins", "--pool", f"old={tmp_path / 'old'}", "--pool", f"new={tmp_path / 'new'}", "--skills", "zh,math",
                 "--examples", "3", "--model", tiny_model_folder, "--out", str(out)]) == 0
    record = json.loads(out.with_suffix(".json").read_text())
    model, tokenizer = load_base_model(tiny_model_folder)
    for skill in ("zh", "math"):
        items = composition_splits(skill).dev[:3]
        cells = record["cells"][skill]
        mean = lambda c: sum(t for t, _ in c) / sum(n for _, n in c)  # noqa: E731
        assert mean(cells["base"]) == pytest.approx(heldout_loss(model, tokenizer, items, max_length=256), rel=1e-5)
        for label in ("old", "new"):
            peft_model = PeftModel.from_pretrained(copy.deepcopy(model), str(tmp_path / label / skill)).eval()
            assert mean(cells[label]) == pytest.approx(heldout_loss(peft_model, tokenizer, items, max_length=256), rel=1e-5)
    table = out.with_suffix(".md").read_text()
    assert "| zh | 3 | " in table and "| new - old |" in table and table in capsys.readouterr().out


def test_the_matched_math_source_answers_in_ape210ks_format():
    from smartfed.data import composition_splits
    from smartfed.data.math_answers import answers_match
    from smartfed.data.pal import equation_answer

    raw = "She sold 48/2 = <<48/2=24>>24 in May.\nIn all <<48+24=72>>72.\n#### 72"
    assert equation_answer(raw, "72") == "列式：48/2=24；48+24=72\n答案是 72。"
    assert equation_answer(raw, "73") is None and equation_answer("no annotations\n#### 5", "5") is None
    assert equation_answer("<<__import__('os')=1>>\n#### 1", "1") is None  # arithmetic only
    train = composition_splits("math-eqn").train
    assert len(train) > 5000 and all(e.target.startswith("列式：") and answers_match(e.target.rsplit(" ", 1)[-1].rstrip("。"), e.answer)
                                     for e in train)


def test_the_examples_a_module_trained_on_are_rebuilt_from_its_card(tiny_model_folder, tmp_path, monkeypatch):
    from smartfed.errors import AdapterError

    fed = []  # every example the build encoded, in order
    real = build.encode_for_training
    monkeypatch.setattr(build, "encode_for_training", lambda tok, example, *a: fed.append(example) or real(tok, example, *a))
    out = build_module(config(tiny_model_folder, tmp_path / "math"))
    assert len(fed) == 4 * 2 and build.trained_examples(out) == fed
    card = json.loads((out / "smartfed_card.json").read_text())
    (out / "smartfed_card.json").write_text(json.dumps(card | {"data": card["data"] | {"train_ids_sha256": "0" * 64}}))
    with pytest.raises(AdapterError, match=r"train_ids_sha256 is 0{64}, found [0-9a-f]{64} here: other training data of 'math'"):
        build.trained_examples(out)
    (out / "smartfed_card.json").write_text(json.dumps(card | {"data": card["data"] | {"train_examples": 7}}))
    with pytest.raises(AdapterError, match=r"its card says 7 training examples of 'math', found \d+ here"):
        build.trained_examples(out)
