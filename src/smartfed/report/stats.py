"""Confidence intervals and paired tests from run folders: a bootstrap over seeds and items together.

A setting is what runs share apart from their name and seed; its runs are its seeds. A statistic is
a ratio of sums over (seed, item) cells: held-out loss = summed NLL / answer tokens, a benchmark
score = items right / items. Each bootstrap draw resamples the seeds and, independently, the items
(with replacement), so the interval reflects both sources of noise; a paired comparison draws the
same seeds (matched by seed number) and items for both settings, so their shared noise cancels.
"""

import numpy as np

DRAWS = 2000


def _draws(seeds: int, items: int, rng_seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(rng_seed)
    return rng.integers(0, seeds, (DRAWS, seeds)), rng.integers(0, items, (DRAWS, items))


def _ratios(values: np.ndarray, weights: np.ndarray, seed_draws: np.ndarray, item_draws: np.ndarray) -> np.ndarray:
    """sum(values) / sum(weights) over each draw's (seed, item) cells.  (DRAWS,)"""
    v = np.stack([values[s][:, i].sum() for s, i in zip(seed_draws, item_draws)])
    w = np.stack([weights[s][:, i].sum() for s, i in zip(seed_draws, item_draws)])
    return v / np.maximum(w, 1e-12)


def interval(values: np.ndarray, weights: np.ndarray, rng_seed: int = 0) -> tuple[float, float, float]:
    """(estimate, 2.5th, 97.5th percentile) of sum(values) / sum(weights); values, weights: (seeds, items)."""
    draws = _ratios(values, weights, *_draws(*values.shape, rng_seed))
    return float(values.sum() / max(weights.sum(), 1e-12)), float(np.percentile(draws, 2.5)), float(np.percentile(draws, 97.5))


def paired(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], rng_seed: int = 0) -> tuple[float, float, float, float]:
    """(difference a - b, its 95% interval, two-sided bootstrap p) for two settings on the same seeds and items."""
    if a[0].shape != b[0].shape:
        raise ValueError(f"paired comparison expected the same seeds x items, found {a[0].shape} and {b[0].shape}")
    seed_draws, item_draws = _draws(*a[0].shape, rng_seed)
    diffs = _ratios(*a, seed_draws, item_draws) - _ratios(*b, seed_draws, item_draws)
    estimate = float(a[0].sum() / a[1].sum() - b[0].sum() / b[1].sum())
    p = 2 * min((diffs <= 0).mean(), (diffs >= 0).mean())
    return estimate, float(np.percentile(diffs, 2.5)), float(np.percentile(diffs, 97.5)), float(max(min(p, 1.0), 1 / DRAWS))
