"""Elastic Expert Quota Allocation (EEQA): share a budget of active experts among adapted matrices by
their measured importance (SPEC section 2).

    K = k_avg * J;  k_j = clamp(floor(K * s_j / sum s), k_min, M_j);  slots left over (or owed) go
    to (or come from) the matrices whose share K * s_j / sum s is furthest from their k_j.

Properties (tested with hypothesis): sum_j k_j == K; k_min <= k_j <= M_j; more importance never
means fewer experts (up to the cap M_j); tied scores get quotas that differ by at most one, with
ties broken by matrix order so the result is deterministic.
"""

import math
from collections.abc import Mapping


def allocate_quotas(scores: Mapping[str, float], sizes: Mapping[str, int], budget: int, k_min: int = 1) -> dict[str, int]:
    """Quotas k_j summing to `budget`, for the matrices of `sizes` (name -> M_j), by `scores` (name -> s_j >= 0)."""
    names = list(sizes)
    if scores.keys() != sizes.keys():
        raise ValueError(f"scores and sizes must name the same matrices; differ on {sorted(scores.keys() ^ sizes.keys())[:3]}")
    low, high = k_min * len(names), sum(sizes.values())
    if any(sizes[n] < k_min for n in names):
        raise ValueError(f"k_min={k_min} exceeds the experts of some matrix (min M_j = {min(sizes.values())})")
    if not low <= budget <= high:
        raise ValueError(f"budget expected in [{low}, {high}] (J * k_min .. sum M_j), found {budget}")
    if any(not math.isfinite(s) or s < 0 for s in scores.values()):
        raise ValueError("importance scores must be finite and >= 0")
    total = sum(scores.values())
    share = {n: budget * scores[n] / total if total > 0 else budget / len(names) for n in names}
    quota = {n: min(max(math.floor(share[n]), k_min), sizes[n]) for n in names}
    order = {n: i for i, n in enumerate(names)}
    left = budget - sum(quota.values())
    while left:
        if left > 0:  # give a slot to the matrix owed the most
            n = max((n for n in names if quota[n] < sizes[n]), key=lambda n: (share[n] - quota[n], scores[n], -order[n]))
            quota[n] += 1
        else:  # take a slot from the matrix given the most beyond its share
            n = min((n for n in names if quota[n] > k_min), key=lambda n: (share[n] - quota[n], scores[n], -order[n]))
            quota[n] -= 1
        left = budget - sum(quota.values())
    return quota


def smooth_scores(previous: Mapping[str, float] | None, current: Mapping[str, float], momentum: float) -> dict[str, float]:
    """Exponential moving average across rounds: momentum * previous + (1 - momentum) * current."""
    if previous is None:
        return dict(current)
    return {n: momentum * previous[n] + (1 - momentum) * current[n] for n in current}


def device_quotas(scores: Mapping[str, float], sizes: Mapping[str, int], k_avg: float, k_min: int = 1) -> dict[str, int]:
    """Quotas for a device whose budget is k_avg active experts per matrix on average (K = round(k_avg * J))."""
    budget = min(max(round(k_avg * len(sizes)), k_min * len(sizes)), sum(sizes.values()))
    return allocate_quotas(scores, sizes, budget, k_min)
