"""Top-k routing against a brute-force per-token loop, training touches routers only, router state I/O."""

import copy

import pytest
import torch

from conftest import tiny_llama
from smartfed import (
    ExpertPool,
    attach_experts,
    get_quotas,
    load_router_state_dict,
    router_parameters,
    router_state_dict,
    set_quotas,
)
from smartfed.errors import RouterStateError
from smartfed.experts import routed_layers
from smartfed.routers import ROUTER_KINDS


def brute_force_layer(layer, experts, x):
    """The routed layer token by token, with the pool's own B and scale (not the layer's folded copy)."""
    """y = W0 x + sum over the top-k experts of softmax-over-top-k(logit) * E_i(x), one token at a time."""
    flat = x.reshape(-1, x.shape[-1])
    out = []
    for t in range(flat.shape[0]):
        xt = flat[t]
        z = torch.stack([layer.A[i] @ xt for i in range(layer.num_experts)])
        logits = layer.router.logits(xt, z)
        chosen = sorted(range(layer.num_experts), key=lambda i: -logits[i].item())[: layer.top_k]
        weights = torch.softmax(torch.stack([logits[i] for i in chosen]), dim=0)
        y = layer.base_layer(xt)
        for w, i in zip(weights, chosen):
            y = y + w * experts.scale[i] * experts.B[:, i] * z[i]
        out.append(y)
    return torch.stack(out).reshape(*x.shape[:-1], -1)


@pytest.mark.parametrize("kind", ["linear", "activation", "lowrank"])
def test_top_k_with_per_matrix_quotas_matches_a_per_token_loop(llama_adapters, kind):
    base, folders = llama_adapters
    pool = ExpertPool.from_adapters(folders, base)
    model = attach_experts(copy.deepcopy(base), pool, router=kind, init_std=1.0)
    layers = routed_layers(model)
    quotas = {name: 1 + i % layer.num_experts for i, (name, layer) in enumerate(layers.items())}
    set_quotas(model, quotas)
    assert get_quotas(model) == quotas and len(set(quotas.values())) > 2
    x = torch.randn(2, 7, 64, generator=torch.Generator().manual_seed(4))
    for name, layer in layers.items():
        d_in = layer.A.shape[1]
        xs = x if d_in == 64 else torch.randn(2, 7, d_in, generator=torch.Generator().manual_seed(5))
        with torch.no_grad():
            torch.testing.assert_close(layer(xs), brute_force_layer(layer, pool.matrices[name], xs), rtol=1e-5, atol=1e-5)


def test_quotas_are_checked(llama_adapters):
    base, folders = llama_adapters
    model = attach_experts(copy.deepcopy(base), ExpertPool.from_adapters(folders, base))
    name, layer = next(iter(routed_layers(model).items()))
    with pytest.raises(ValueError, match=r"expected an int in \[1, "):
        set_quotas(model, {name: layer.num_experts + 1})
    with pytest.raises(ValueError, match="no such matrix"):
        set_quotas(model, {"model.nope": 1})
    assert layer.top_k == 2


@pytest.mark.parametrize("kind", [k for k in ROUTER_KINDS if k != "module-arrow"])  # module-arrow trains nothing
def test_training_changes_only_the_routers(llama_adapters, kind):
    base, folders = llama_adapters
    pool = ExpertPool.from_adapters(folders, base)
    model = attach_experts(copy.deepcopy(base), pool, router=kind)
    base_before = {k: v.clone() for k, v in base.state_dict().items()}
    routers_before = router_state_dict(model)
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert {id(p) for p in trainable} == {id(p) for p in router_parameters(model)}

    optimizer = torch.optim.AdamW(trainable, lr=1e-2)
    ids = torch.randint(0, 128, (2, 12), generator=torch.Generator().manual_seed(6))
    model.train()
    for _ in range(3):
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    detached_base = {k.replace(".base_layer", ""): v for k, v in model.state_dict().items() if ".router." not in k}
    assert detached_base.keys() == base_before.keys()
    for key, value in base_before.items():
        assert torch.equal(detached_base[key], value), key
    for name, layer in routed_layers(model).items():
        experts = pool.matrices[name]
        assert torch.equal(layer.A, experts.A) and torch.equal(layer.scaled_B, experts.B * experts.scale)
    routers_after = router_state_dict(model)
    assert all(not torch.equal(routers_after[k], routers_before[k]) for k in routers_before)


def test_router_state_round_trips_and_is_checked(llama_adapters):
    base, folders = llama_adapters
    pool = ExpertPool.from_adapters(folders, base)
    trained = attach_experts(copy.deepcopy(base), pool, router="linear", init_std=0.5)
    fresh = attach_experts(copy.deepcopy(base), pool, router="linear", init_std=0.0)
    ids = torch.randint(0, 128, (1, 10), generator=torch.Generator().manual_seed(7))
    state = router_state_dict(trained)
    load_router_state_dict(fresh, state)
    with torch.no_grad():
        torch.testing.assert_close(fresh(input_ids=ids).logits, trained(input_ids=ids).logits, rtol=0, atol=0)

    key = next(iter(state))
    with pytest.raises(RouterStateError, match="missing keys"):
        load_router_state_dict(fresh, {k: v for k, v in state.items() if k != key})
    with pytest.raises(RouterStateError, match="unexpected keys"):
        load_router_state_dict(fresh, {**state, "model.extra.weight": torch.zeros(1)})
    with pytest.raises(RouterStateError, match=f"'{key}': expected"):
        load_router_state_dict(fresh, {**state, key: torch.zeros(3, 3)})
    with pytest.raises(RouterStateError, match="float64"):
        load_router_state_dict(fresh, {**state, key: state[key].double()})


def test_tiny_llama_forward_is_unchanged_by_attach_when_gates_are_zero(llama_adapters):
    """A static router with all weights zero adds exactly nothing."""
    base, folders = llama_adapters
    model = attach_experts(copy.deepcopy(base), ExpertPool.from_adapters(folders, base), router="static")
    for p in router_parameters(model):
        torch.nn.init.zeros_(p)
    ids = torch.randint(0, 128, (1, 8), generator=torch.Generator().manual_seed(8))
    with torch.no_grad():
        assert torch.equal(model(input_ids=ids).logits, base(input_ids=ids).logits)


def test_attach_refuses_a_pool_for_another_model(llama_adapters):
    base, folders = llama_adapters
    pool = ExpertPool.from_adapters(folders, base)
    other = tiny_llama()
    other.model.layers = other.model.layers[:1]
    with pytest.raises(Exception, match="expected in the base model, found no such module"):
        attach_experts(other, pool)


@pytest.mark.parametrize("kind", ["linear", "lowrank"])
@pytest.mark.parametrize("gate", ["softmax", "scaled", "sigmoid", "softmax-all"])
def test_the_sparse_path_equals_the_dense_one(llama_adapters, kind, gate):
    """Only the k kept experts computed (gathered A rows and B columns): the same output, router gradients and
    EEQA importance (the dense path's ||B m|| through the Gram matrix, the sparse path's norm of its update)."""
    from smartfed.quota.importance import read_importance, real_tokens, start_importance

    base, folders = llama_adapters
    pool = ExpertPool.from_adapters(folders, base)
    ids = torch.randint(0, 128, (2, 9), generator=torch.Generator().manual_seed(3))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # padding: out of the importance
    results = []
    for sparse in (False, True):
        torch.manual_seed(0)
        model = attach_experts(copy.deepcopy(base), pool, router=kind, top_k=2, gate=gate, output_scale=True, init_std=0.3, sparse=sparse)
        assert all(layer.sparse == sparse for layer in routed_layers(model).values())
        start_importance(model, "relative_norm")
        with real_tokens(model, mask):
            loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        importance = read_importance(model)
        results.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}, importance))
    (dense_loss, dense_grads, dense_importance), (sparse_loss, sparse_grads, sparse_importance) = results
    torch.testing.assert_close(sparse_loss, dense_loss, rtol=1e-5, atol=1e-6)
    assert dense_importance.keys() == sparse_importance.keys() and all(v > 0 for v in dense_importance.values())
    for name in dense_importance:
        assert sparse_importance[name] == pytest.approx(dense_importance[name], rel=1e-4, abs=1e-7)
    assert dense_grads.keys() == sparse_grads.keys()
    for name in dense_grads:
        torch.testing.assert_close(sparse_grads[name], dense_grads[name], rtol=1e-4, atol=1e-6)
    # and the same as the update's norm formed in full: ||sum of the kept experts' outputs|| / ||W0 x|| over real tokens
    layer_name, seen = next(iter(dense_importance)), {}
    torch.manual_seed(0)  # the routers of the runs above
    model = attach_experts(copy.deepcopy(base), pool, router=kind, top_k=2, gate=gate, output_scale=True, init_std=0.3)
    layer = routed_layers(model)[layer_name]
    hook = layer.register_forward_hook(lambda mod, args, out: seen.update(x=args[0].detach(), out=out.detach()))
    with torch.no_grad(), real_tokens(model, mask):
        model(input_ids=ids)
    hook.remove()
    y = layer.base_layer(seen["x"])
    ratio = torch.linalg.vector_norm(seen["out"] - y, dim=-1) / torch.linalg.vector_norm(y, dim=-1)  # (batch, seq)
    by_hand = (ratio * mask).sum() / mask.sum()
    assert dense_importance[layer_name] == pytest.approx(by_hand.item(), rel=1e-4)


def test_routers_that_read_activations_stay_dense(llama_adapters):
    base, folders = llama_adapters
    for sparse in (True, "auto"):
        model = attach_experts(copy.deepcopy(base), ExpertPool.from_adapters(folders, base), router="activation", sparse=sparse)
        assert not any(layer.computes_only_kept_experts() for layer in routed_layers(model).values())


def test_auto_sparse_gathers_the_kept_experts_where_it_measured_faster(llama_adapters):
    """auto: sparse where M >= 128 k (bench/sparse_crossover.py's CPU crossover), decided at each forward, so an EEQA
    quota that lowers k can switch a matrix to the sparse path; the config takes true, false or auto."""
    from smartfed.config import load_config
    from smartfed.errors import ConfigError

    base, folders = llama_adapters
    layer = next(iter(routed_layers(attach_experts(copy.deepcopy(base), ExpertPool.from_adapters(folders, base), sparse="auto")).values()))
    chosen = {}
    for m, k in [(32, 1), (32, 2), (128, 1), (128, 2), (512, 1), (512, 4), (512, 8)]:
        layer.num_experts, layer.top_k = m, k
        chosen[m, k] = layer.computes_only_kept_experts()
    # the measured table (README): sparse / dense < 1 exactly at (128, 1), (512, 1), (512, 2), (512, 4)
    assert chosen == {(32, 1): False, (32, 2): False, (128, 1): True, (128, 2): False, (512, 1): True, (512, 4): True, (512, 8): False}
    assert load_config(overrides=["router.sparse=auto"]).router.sparse == "auto"
    with pytest.raises(ConfigError, match="router.sparse"):
        load_config(overrides=["router.sparse=sometimes"])
