"""Gate functions by hand, the saturated-gate identity against peft, and the Arrow start."""

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from smartfed import ExpertPool, attach_experts, router_state_dict
from smartfed.experts import routed_layers
from smartfed.routers import GATES, build_router, expert_gain
from test_exactness import peft_output


def _by_hand(logits: np.ndarray, k: int, gate: str) -> np.ndarray:
    out = np.zeros_like(logits)
    for idx in np.ndindex(logits.shape[:-1]):
        row = logits[idx]
        top = np.argsort(-row)[:k]
        if gate == "softmax-all":
            probs = np.exp(row - row.max()) / np.exp(row - row.max()).sum()
            out[idx][top] = probs[top]
        elif gate == "sigmoid":
            out[idx][top] = 1 / (1 + np.exp(-row[top]))
        else:
            kept = np.exp(row[top] - row[top].max()) / np.exp(row[top] - row[top].max()).sum()
            out[idx][top] = kept * (k if gate == "scaled" else 1)
    return out


@pytest.mark.parametrize("gate", sorted(GATES))
@pytest.mark.parametrize("k", [1, 3, 6])
def test_gates_match_a_computation_by_hand(gate, k):
    logits = torch.randn(2, 4, 6, generator=torch.Generator().manual_seed(k))
    got = GATES[gate](logits, k)
    np.testing.assert_allclose(got.numpy(), _by_hand(logits.double().numpy(), k, gate), rtol=1e-5, atol=1e-7)
    assert ((got != 0).sum(-1) <= k).all()
    if gate == "scaled":
        torch.testing.assert_close(got.sum(-1), torch.full((2, 4), float(k)))


@pytest.mark.parametrize("gate", ["scaled", "sigmoid"])
def test_a_saturated_gate_on_one_modules_experts_reproduces_that_module(block_adapters, gate):
    """Module n's experts kept with weight 1 each (all r_n of them), nothing else: module n's own peft output."""
    base, folders, x = block_adapters
    pool = ExpertPool.from_adapters(folders, base)
    for n, folder in enumerate(folders):
        model = attach_experts(copy.deepcopy(base), pool, router="activation", top_k=None, gate=gate, output_scale=True)
        with torch.no_grad():
            for name, layer in routed_layers(model).items():
                mine = pool.matrices[name].source == n  # (M,) module n's experts in this matrix
                layer.router.weight.zero_()
                layer.router.bias.copy_(torch.where(mine, 40.0, -40.0))
                layer.top_k = max(int(mine.sum()), 1)
                layer.router.output_scale.fill_(1.0 if mine.any() else 0.0)  # a matrix module n does not adapt
            got = model(x)
        torch.testing.assert_close(got, peft_output(base, folder, x), rtol=1e-5, atol=1e-5)


def test_output_scale_is_a_router_parameter_that_scales_the_update(block_adapters):
    base, folders, x = block_adapters
    pool = ExpertPool.from_adapters(folders, base)
    model = attach_experts(copy.deepcopy(base), pool, router="linear", top_k=2, output_scale=True, init_std=0.5)
    assert all(key.endswith((".weight", ".output_scale")) for key in router_state_dict(model))
    with torch.no_grad():
        y_base, y_one = base(x), model(x)
        for layer in routed_layers(model).values():
            layer.router.output_scale.fill_(2.0)
        torch.testing.assert_close(model(x) - y_base, 2 * (y_one - y_base), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("kind", ["linear", "activation", "arrow"])
def test_arrow_start_scores_each_expert_by_its_activation_and_gain(block_adapters, kind):
    """score_i = |A_i x| ||B_i|| s_i (Arrow at rank-1 granularity); linear and activation keep its sign."""
    base, folders, _ = block_adapters
    pool = ExpertPool.from_adapters(folders, base)
    for name, experts in pool.matrices.items():
        router = build_router(kind, experts, init="arrow", init_std=1.0)
        x = torch.randn(3, experts.d_in, generator=torch.Generator().manual_seed(7))
        z = F.linear(x, experts.A)  # (3, M)
        gain = experts.B.norm(dim=0) * experts.scale  # (M,) by hand
        expected = z.abs() * gain if kind == "arrow" else z * gain
        torch.testing.assert_close(router.logits(x, z), expected, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(expert_gain(experts), gain)


def test_arrow_init_is_refused_where_the_router_cannot_express_it(block_adapters):
    base, folders, _ = block_adapters
    experts = next(iter(ExpertPool.from_adapters(folders, base).matrices.values()))
    with pytest.raises(ValueError, match="'arrow' for linear, activation, arrow"):
        build_router("lowrank", experts, init="arrow")


def test_the_default_start_is_arrow_where_the_router_kind_can_express_it():
    from smartfed.config import load_config
    from smartfed.errors import ConfigError
    from smartfed.methods import get_method
    from smartfed.routers import ROUTER_KINDS, arrow_initialisable

    smartfed = get_method("smartfed")
    for kind in (k for k in ROUTER_KINDS if k != "module-arrow"):  # module-arrow: the arrow method's own, not a config choice
        config = load_config(overrides=[f"router.kind={kind}"])
        assert config.router.init == "auto"
        assert smartfed.router_init(config) == ("arrow" if kind in arrow_initialisable() else "random")
    assert smartfed.router_init(load_config(overrides=["router.kind=linear", "router.init=random"])) == "random"
    with pytest.raises(ConfigError, match=r"router.kind \(with router.init = 'arrow'\)': expected one of .*found 'lowrank'"):
        load_config(overrides=["router.kind=lowrank", "router.init=arrow"])
