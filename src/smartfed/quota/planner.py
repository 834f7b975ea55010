"""EEQA on the server: the example-weighted mean of client importance scores, smoothed across rounds,
turned into quotas for the full budget K = top_k * J every `realloc_every` rounds, and scaled down
for devices that announce a smaller budget (SPEC section 2)."""

import math
import statistics
from collections.abc import Mapping

from smartfed.quota.allocation import allocate_quotas, device_quotas, smooth_scores


class QuotaPlanner:
    def __init__(self, sizes: Mapping[str, int], top_k: int, k_min: int, smoothing: float, realloc_every: int,
                 enabled: bool, device_budgets: Mapping[int, float], scores: dict[str, float] | None = None, robust: bool = False):
        """`robust`: the per-matrix median of the clients' scores instead of their example-weighted mean."""
        self.sizes, self.top_k, self.k_min = dict(sizes), top_k, k_min
        self.smoothing, self.realloc_every, self.enabled = smoothing, realloc_every, enabled
        self.device_budgets, self.scores, self.robust = dict(device_budgets), scores, robust

    def update(self, round_: int, replies: list[tuple[dict[str, float], int]], quotas: dict[str, int]) -> dict[str, int]:
        """The next quotas from this round's (scores, num_examples) replies; `quotas` if EEQA is off."""
        if not self.enabled or not replies:
            return quotas
        self.scores = smooth_scores(self.scores, self._combine(replies), self.smoothing)
        if round_ % self.realloc_every:
            return quotas
        budget = min(self.top_k * len(self.sizes), sum(self.sizes.values()))  # K = top_k * J, at most every expert
        return allocate_quotas(self.scores, self.sizes, budget, self.k_min)

    def _combine(self, replies: list[tuple[dict[str, float], int]]) -> dict[str, float]:
        """Per matrix: the median of the clients' scores (robust), else their example-weighted mean,
        with the weights normalised first so bounded scores cannot overflow."""
        if self.robust:
            return {m: statistics.median(s[m] for s, _ in replies) for m in self.sizes}
        total = sum(n for _, n in replies)
        return {m: sum(s[m] * (n / total) for s, n in replies) for m in self.sizes}

    def for_client(self, client: int, quotas: dict[str, int]) -> dict[str, int]:
        """`quotas`, or for a device with a smaller budget k_avg, quotas scaled to it by the same rule."""
        k_avg = self.device_budgets.get(client)
        if k_avg is None:
            return quotas
        scores = self.scores or {m: 1.0 for m in self.sizes}
        return device_quotas(scores, self.sizes, k_avg, min(self.k_min, math.floor(k_avg)) or 1)
