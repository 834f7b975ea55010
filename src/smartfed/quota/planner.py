"""EEQA on the server: the example-weighted mean of client importance scores, smoothed across rounds,
turned into quotas for the full budget K = top_k * J every `realloc_every` rounds, and scaled down
for devices that announce a smaller budget (SPEC section 2)."""

import math
from collections.abc import Mapping

from smartfed.quota.allocation import allocate_quotas, device_quotas, smooth_scores


class QuotaPlanner:
    def __init__(self, sizes: Mapping[str, int], top_k: int, k_min: int, smoothing: float, realloc_every: int,
                 enabled: bool, device_budgets: Mapping[int, float], scores: dict[str, float] | None = None):
        self.sizes, self.top_k, self.k_min = dict(sizes), top_k, k_min
        self.smoothing, self.realloc_every, self.enabled = smoothing, realloc_every, enabled
        self.device_budgets, self.scores = dict(device_budgets), scores

    def update(self, round_: int, replies: list[tuple[dict[str, float], int]], quotas: dict[str, int]) -> dict[str, int]:
        """The next quotas from this round's (scores, num_examples) replies; `quotas` if EEQA is off."""
        if not self.enabled or not replies:
            return quotas
        total = sum(n for _, n in replies)
        mean = {m: sum(s[m] * n for s, n in replies) / total for m in self.sizes}
        self.scores = smooth_scores(self.scores, mean, self.smoothing)
        if round_ % self.realloc_every:
            return quotas
        return allocate_quotas(self.scores, self.sizes, self.top_k * len(self.sizes), self.k_min)

    def for_client(self, client: int, quotas: dict[str, int]) -> dict[str, int]:
        """`quotas`, or for a device with a smaller budget k_avg, quotas scaled to it by the same rule."""
        k_avg = self.device_budgets.get(client)
        if k_avg is None:
            return quotas
        scores = self.scores or {m: 1.0 for m in self.sizes}
        return device_quotas(scores, self.sizes, k_avg, min(self.k_min, math.floor(k_avg)) or 1)
