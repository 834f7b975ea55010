"""The routed layer against peft's own LoRA outputs (SPEC section 1, the layer's first tests)."""

import copy

import torch
from peft import PeftModel

from conftest import make_adapter, tiny_gpt2
from smartfed import ExpertPool, attach_experts, detach_experts
from smartfed.experts import routed_layers, set_module_weights


def peft_output(base, folder, inputs):
    model = PeftModel.from_pretrained(copy.deepcopy(base), folder).eval()
    with torch.no_grad():
        return model(**inputs).logits if isinstance(inputs, dict) else model(inputs)


def smartfed_static(base, pool, weights, inputs):
    model = attach_experts(copy.deepcopy(base), pool, router="static")
    set_module_weights(model, weights)
    with torch.no_grad():
        return model(**inputs).logits if isinstance(inputs, dict) else model(inputs)


def test_static_one_hot_reproduces_each_peft_adapter_on_llama(llama_adapters):
    base, folders = llama_adapters
    pool = ExpertPool.from_adapters(folders, base)
    inputs = {"input_ids": torch.randint(0, 128, (2, 11), generator=torch.Generator().manual_seed(1))}
    with torch.no_grad():
        y_base = base(**inputs).logits
    for n, folder in enumerate(folders):
        y_peft = peft_output(base, folder, inputs)
        assert not torch.allclose(y_peft, y_base, atol=1e-3), "adapter must change the output for the test to bite"
        one_hot = [1.0 if i == n else 0.0 for i in range(len(folders))]
        torch.testing.assert_close(smartfed_static(base, pool, one_hot, inputs), y_peft, rtol=1e-5, atol=1e-5)


def test_static_one_hot_reproduces_peft_on_gpt2_conv1d(tmp_path):
    base = tiny_gpt2()
    folders = [
        make_adapter(base, tmp_path / "attn", 0, r=4, lora_alpha=8, target_modules=["c_attn"], fan_in_fan_out=True),
        make_adapter(base, tmp_path / "mlp", 1, r=6, lora_alpha=3, target_modules=["c_fc", "c_proj"], fan_in_fan_out=True),
    ]
    pool = ExpertPool.from_adapters(folders, base)
    inputs = {"input_ids": torch.randint(0, 128, (2, 9), generator=torch.Generator().manual_seed(2))}
    for n, folder in enumerate(folders):
        one_hot = [float(i == n) for i in range(2)]
        torch.testing.assert_close(smartfed_static(base, pool, one_hot, inputs), peft_output(base, folder, inputs), rtol=1e-5, atol=1e-5)


def test_static_mix_is_the_weighted_sum_of_peft_deltas(block_adapters):
    base, folders, x = block_adapters
    pool = ExpertPool.from_adapters(folders, base)
    with torch.no_grad():
        y_base = base(x)
    y = [peft_output(base, f, x) for f in folders]
    w = [0.7, -0.4, 1.9]
    expected = y_base + sum(w_n * (y_n - y_base) for w_n, y_n in zip(w, y))
    torch.testing.assert_close(smartfed_static(base, pool, w, x), expected, rtol=1e-5, atol=1e-5)


def test_zero_router_with_all_experts_is_the_uniform_mix(block_adapters):
    """SPEC: a zero-initialised router with k_j = M_j reproduces a uniform 1/M_j mix of the experts."""
    base, folders, x = block_adapters
    pool = ExpertPool.from_adapters(folders, base)
    model = attach_experts(copy.deepcopy(base), pool, router="linear", top_k=None, init_std=0.0)
    with torch.no_grad():
        y_base = base(x)
        got = model(x)
    # Matrix j has M_j experts; module n's LoRA is the sum of its experts, so it enters with weight 1/M_j.
    sizes = {name: m.num_experts for name, m in pool.matrices.items()}
    expected = y_base.clone()
    for folder in folders:
        peft_model = PeftModel.from_pretrained(copy.deepcopy(base), folder).eval()
        with torch.no_grad():
            for name, lo, hi in (("q", 0, 24), ("k", 24, 32), ("c", 32, 44)):
                if name in sizes:
                    delta = peft_model.base_model.model.get_submodule(name)(x) - base.get_submodule(name)(x)
                    expected[..., lo:hi] += delta / sizes[name]
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_detach_restores_the_original_modules(llama_adapters):
    base, folders = llama_adapters
    model = copy.deepcopy(base)
    originals = dict(model.named_modules())
    pool = ExpertPool.from_adapters(folders, model)
    attach_experts(model, pool, router="activation")
    assert set(routed_layers(model)) == set(pool.matrices)
    detach_experts(model)
    assert not routed_layers(model)
    for name, module in model.named_modules():
        assert module is originals[name]
