"""Shipped pool modules: bf16 PEFT folders that peft loads as they are, found before any built pool."""

import copy
import hashlib
import json

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file

from conftest import make_adapter, tiny_llama
from smartfed.errors import AdapterError
from smartfed.pool import resolve
from smartfed.pool.resolve import DEFAULT_SKILLS, default_pool_folders, shipped_pool_dir
from smartfed.pool.ship import CARD, MAX_SHIPPED_MB, ship_pool


def _built(base, folder, seed):
    make_adapter(base, folder, seed, r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"])
    (folder / CARD).write_text(json.dumps({"skill": folder.name, "steps": 3, "final_loss": 1.5}))
    return folder


def test_a_shipped_module_is_the_built_one_in_bf16_and_peft_loads_it(tmp_path):
    base = tiny_llama()
    built = [_built(base, tmp_path / "built" / skill, n) for n, skill in enumerate(("zh", "math"))]
    shipped = ship_pool(built, "tiny-model", tmp_path / "shipped")
    assert [p.name for p in shipped] == ["zh", "math"] and not list((tmp_path / "shipped").glob(".*"))  # no temp folders left
    for folder, out in zip(built, shipped):
        fp32, bf16 = load_file(folder / "adapter_model.safetensors"), load_file(out / "adapter_model.safetensors")
        assert fp32.keys() == bf16.keys() and all(bf16[k].dtype == torch.bfloat16 and torch.equal(bf16[k], fp32[k].to(torch.bfloat16)) for k in fp32)
        assert json.loads((out / "adapter_config.json").read_text())["base_model_name_or_path"] == "tiny-model"
        card = json.loads((out / CARD).read_text())
        assert card["final_loss"] == 1.5
        assert card["shipped"]["fp32_weights_sha256"] == hashlib.sha256((folder / "adapter_model.safetensors").read_bytes()).hexdigest()
        assert (out / "adapter_model.safetensors").stat().st_size < 0.6 * (folder / "adapter_model.safetensors").stat().st_size
    x = torch.randint(0, 64, (2, 7), generator=torch.Generator().manual_seed(0))
    want = PeftModel.from_pretrained(copy.deepcopy(base), str(built[0]))(input_ids=x).logits
    got = PeftModel.from_pretrained(copy.deepcopy(base), str(shipped[0]))(input_ids=x).logits
    assert torch.allclose(got.float(), want, atol=2e-2) and not torch.equal(got.float(), want)  # rounded, not the same bits


def test_shipping_again_replaces_the_folder_whole(tmp_path):
    base = tiny_llama()
    first = ship_pool([_built(base, tmp_path / "a" / "zh", 0)], "tiny-model", tmp_path / "shipped")[0]
    second = ship_pool([_built(base, tmp_path / "b" / "zh", 5)], "tiny-model", tmp_path / "shipped")[0]
    assert first == second
    assert torch.equal(load_file(second / "adapter_model.safetensors")["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"],
                       load_file(tmp_path / "b" / "zh" / "adapter_model.safetensors")["base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"].to(torch.bfloat16))
    assert sorted(p.name for p in (tmp_path / "shipped").iterdir()) == ["zh"]
    ship_pool([_built(base, tmp_path / "c" / s, n) for n, s in enumerate(("zh", "math"))], "tiny-model", tmp_path / "shipped")
    ship_pool([_built(base, tmp_path / "d" / "code", 7)], "tiny-model", tmp_path / "shipped")
    assert sorted(p.name for p in (tmp_path / "shipped").iterdir()) == ["code"]  # the pool is replaced whole, not merged
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp or old folders left


def test_shipping_refuses_an_unbuilt_folder_or_a_pool_over_the_size_cap(tmp_path):
    base = tiny_llama()
    bare = tmp_path / "bare"
    make_adapter(base, bare, 0, r=4, lora_alpha=8, target_modules=["q_proj"])
    good = ship_pool([_built(base, tmp_path / "zh0", 0)], "tiny-model", tmp_path / "shipped")[0]
    before = (good / "adapter_model.safetensors").read_bytes()
    with pytest.raises(AdapterError, match=r"bare: expected smartfed_card.json"):
        ship_pool([_built(base, tmp_path / "zh", 3), bare], "tiny-model", tmp_path / "shipped")
    assert (good / "adapter_model.safetensors").read_bytes() == before  # a bad second module changes nothing
    built = tmp_path / "zh"
    with pytest.raises(AdapterError, match=r"expected at most 0.001 MB of bf16 weights, found 0\.\d+ MB"):
        ship_pool([built], "tiny-model", tmp_path / "shipped2", max_mb=0.001)
    assert not (tmp_path / "shipped2").exists()


def test_the_default_pool_is_the_shipped_one_when_whole(tmp_path, monkeypatch):
    monkeypatch.setenv("SMARTFED_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(resolve, "SHIPPED_POOLS", tmp_path / "shipped")
    for root in (tmp_path / "cache" / "pools" / "tiny", tmp_path / "shipped" / "tiny"):
        for skill in DEFAULT_SKILLS:
            (root / skill).mkdir(parents=True)
            (root / skill / "adapter_config.json").write_text("{}")
    assert default_pool_folders("tiny") == [tmp_path / "shipped" / "tiny" / s for s in DEFAULT_SKILLS]
    (tmp_path / "shipped" / "tiny" / "code" / "adapter_config.json").unlink()  # a shipped pool with a module missing
    assert default_pool_folders("tiny") == [tmp_path / "cache" / "pools" / "tiny" / s for s in DEFAULT_SKILLS]


def test_the_shipped_default_pool_stays_under_the_cap():
    root = shipped_pool_dir("smollm2-135m-instruct")
    assert root.is_dir(), "the default model's pool ships with the package"
    total = sum(p.stat().st_size for p in root.rglob("*") if p.is_file())
    assert total / 1e6 <= MAX_SHIPPED_MB
    for skill in DEFAULT_SKILLS:
        card = json.loads((root / skill / CARD).read_text())
        assert card["skill"] == skill and card["shipped"]["dtype"] == "bfloat16"
        assert {t.dtype for t in load_file(root / skill / "adapter_model.safetensors").values()} == {torch.bfloat16}


def test_pool_ship_command_ships_the_four_default_modules(tmp_path, monkeypatch, capsys):
    from smartfed.cli.main import main

    monkeypatch.setattr(resolve, "SHIPPED_POOLS", tmp_path / "shipped")
    base = tiny_llama()
    for n, skill in enumerate(DEFAULT_SKILLS):
        _built(base, tmp_path / "built" / skill, n)
    assert main(["pool", "ship", "--model", "tiny", "--from", str(tmp_path / "built")]) == 0
    assert default_pool_folders("tiny") == [tmp_path / "shipped" / "tiny" / s for s in DEFAULT_SKILLS]
    assert capsys.readouterr().out.count("shipped: ") == len(DEFAULT_SKILLS)
