"""EEQA allocation properties, checked with hypothesis."""

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from smartfed.quota import allocate_quotas, device_quotas, smooth_scores


@st.composite
def problems(draw):
    j = draw(st.integers(1, 12))
    sizes = {f"m{i}": draw(st.integers(1, 40)) for i in range(j)}
    scores = {n: draw(st.floats(0, 100, allow_nan=False, allow_infinity=False)) for n in sizes}
    k_min = draw(st.integers(1, min(sizes.values())))
    budget = draw(st.integers(k_min * j, sum(sizes.values())))
    return scores, sizes, budget, k_min


@settings(max_examples=300, deadline=None)
@given(problems())
def test_quotas_sum_to_the_budget_within_bounds(problem):
    scores, sizes, budget, k_min = problem
    quotas = allocate_quotas(scores, sizes, budget, k_min)
    assert sum(quotas.values()) == budget
    assert all(k_min <= quotas[n] <= sizes[n] for n in sizes)


@settings(max_examples=300, deadline=None)
@given(problems())
def test_more_importance_never_means_fewer_experts(problem):
    scores, sizes, budget, k_min = problem
    quotas = allocate_quotas(scores, sizes, budget, k_min)
    for a in sizes:
        for b in sizes:
            if scores[a] > scores[b]:
                assert quotas[a] >= min(quotas[b], sizes[a]), (a, b)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 10), st.integers(1, 32), st.floats(0.1, 10), st.data())
def test_tied_scores_are_stable(j, m, score, data):
    sizes = {f"m{i}": m for i in range(j)}
    budget = data.draw(st.integers(j, j * m))
    quotas = allocate_quotas({n: score for n in sizes}, sizes, budget)
    assert max(quotas.values()) - min(quotas.values()) <= 1
    assert allocate_quotas({n: score for n in sizes}, sizes, budget) == quotas  # deterministic
    assert list(quotas.values()) == sorted(quotas.values(), reverse=True)  # extra slots go in matrix order


@settings(max_examples=100, deadline=None)
@given(problems(), st.floats(1.0, 5.0))
def test_a_weak_device_gets_no_more_experts_anywhere(problem, strong_k):
    scores, sizes, _, _ = problem
    weak = device_quotas(scores, sizes, 1.0)
    strong = device_quotas(scores, sizes, strong_k)
    assert sum(weak.values()) <= sum(strong.values())
    assert sum(weak.values()) == min(max(len(sizes), round(1.0 * len(sizes))), sum(sizes.values()))


def test_worked_example():
    sizes = {"q": 32, "k": 32, "v": 32, "o": 8}
    # K = 2 * 4 = 8; shares 8 * (4, 2, 1, 1) / 8 = (4, 2, 1, 1): exact
    assert allocate_quotas({"q": 4, "k": 2, "v": 1, "o": 1}, sizes, 8) == {"q": 4, "k": 2, "v": 1, "o": 1}
    # shares (4.8, 1.6, 1.6, 0) -> floors (4, 1, 1, 1 by k_min) = 7; the one slot left goes to q (owed .8)
    assert allocate_quotas({"q": 3, "k": 1, "v": 1, "o": 0}, sizes, 8) == {"q": 5, "k": 1, "v": 1, "o": 1}
    # a cap: o has only 8 experts
    assert allocate_quotas({"q": 0, "k": 0, "v": 0, "o": 1}, sizes, 20)["o"] == 8


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"budget expected in \[2, 4\]"):
        allocate_quotas({"a": 1, "b": 1}, {"a": 2, "b": 2}, 5)
    with pytest.raises(ValueError, match="same matrices"):
        allocate_quotas({"a": 1}, {"a": 2, "b": 2}, 2)
    with pytest.raises(ValueError, match="finite"):
        allocate_quotas({"a": float("nan"), "b": 1}, {"a": 2, "b": 2}, 2)


def test_smoothing():
    assert smooth_scores(None, {"a": 1.0}, 0.5) == {"a": 1.0}
    assert smooth_scores({"a": 1.0}, {"a": 3.0}, 0.25) == {"a": 2.5}


def test_relative_norm_importance_is_the_routed_update_norm_over_the_base_output_norm(llama_adapters):
    """By hand on one layer: ||y_routed - W0 x|| / ||W0 x|| per token, averaged (the layer takes the norm
    from B^T B without forming the update; this forms it)."""
    import copy

    import torch

    from smartfed import ExpertPool, attach_experts
    from smartfed.experts import routed_layers
    from smartfed.quota.importance import read_importance, start_importance

    base, folders = llama_adapters
    model = attach_experts(copy.deepcopy(base), ExpertPool.from_adapters(folders, base), router="linear", top_k=2, init_std=0.5)
    name, layer = next(iter(routed_layers(model).items()))
    x = torch.randn(3, 5, layer.A.shape[1], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y0 = layer.base_layer(x)
        expected = ((layer(x) - y0).norm(dim=-1) / y0.norm(dim=-1)).mean().item()
        start_importance(model, "relative_norm")
        layer(x)
    assert read_importance(model)[name] == pytest.approx(expected, rel=1e-4)


def test_relative_norm_importance_averages_over_real_tokens_only(llama_adapters):
    """Right padding leaves the real tokens' activations unchanged (causal attention), so the importance of a
    padded batch must equal the token-weighted importance of its rows run one by one without padding."""
    import copy

    import torch

    from smartfed import ExpertPool, attach_experts
    from smartfed.quota.importance import read_importance, real_tokens, start_importance

    base, folders = llama_adapters
    model = attach_experts(copy.deepcopy(base), ExpertPool.from_adapters(folders, base), router="linear", top_k=2, init_std=0.5)
    rows = [torch.randint(1, 128, (n,), generator=torch.Generator().manual_seed(n)) for n in (9, 4)]
    ids = torch.zeros(2, 9, dtype=torch.long)
    mask = torch.zeros(2, 9, dtype=torch.long)
    for r, row in enumerate(rows):
        ids[r, : len(row)], mask[r, : len(row)] = row, 1
    with torch.no_grad():
        start_importance(model, "relative_norm")
        with real_tokens(model, mask):
            model(input_ids=ids, attention_mask=mask)
        padded = read_importance(model)
        sums = {}
        for row in rows:
            start_importance(model, "relative_norm")
            model(input_ids=row[None])
            for name, value in read_importance(model).items():
                sums[name] = sums.get(name, 0.0) + value * len(row)
    expected = {name: s / sum(len(r) for r in rows) for name, s in sums.items()}
    assert padded == pytest.approx(expected, rel=1e-4)
