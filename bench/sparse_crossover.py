"""Where the sparse top-k path pays: one routed layer (d_in = d_out = 576, SmolLM2-135M's q_proj; 1,024
tokens; linear router), forward + backward, dense (all M experts, then the gate) against sparse (only the
k kept experts, gathered), for M experts and quota k, side by side in one run (median of repeats).

    python bench/sparse_crossover.py      # ~1 min on 2 CPU cores
"""

import statistics
import time

import torch
from torch import nn

from smartfed.experts.layer import RoutedLinear
from smartfed.pool.expert_pool import MatrixExperts
from smartfed.routers import build_router

D, TOKENS, REPEATS = 576, 1024, 7


def layer(num_experts: int, k: int, sparse: bool) -> RoutedLinear:
    g = torch.Generator().manual_seed(0)
    experts = MatrixExperts(torch.randn(num_experts, D, generator=g) * 0.02, torch.randn(D, num_experts, generator=g) * 0.02,
                            torch.ones(num_experts), torch.zeros(num_experts, dtype=torch.int32), torch.arange(num_experts, dtype=torch.int32))
    base = nn.Linear(D, D).requires_grad_(False)
    torch.manual_seed(0)
    return RoutedLinear(base, experts, build_router("linear", experts, init_std=0.1), k, sparse=sparse)


def step_time(module: RoutedLinear, x: torch.Tensor) -> float:
    times = []
    for _ in range(REPEATS):
        began = time.perf_counter()
        module(x).sum().backward()
        times.append(time.perf_counter() - began)
    return statistics.median(times[1:])


def main() -> None:
    x = torch.randn(TOKENS, D, generator=torch.Generator().manual_seed(1))
    print(f"one routed layer, d = {D}, {TOKENS} tokens, forward + backward, torch {torch.__version__}, {torch.get_num_threads()} threads\n")
    print("| M | k | dense ms | sparse ms | sparse / dense |\n|---:|---:|---:|---:|---:|")
    for num_experts in (8, 32, 128, 512):
        for k in (1, 2, 4, 8):
            if k >= num_experts:
                continue
            dense, sparse = step_time(layer(num_experts, k, False), x), step_time(layer(num_experts, k, True), x)
            print(f"| {num_experts} | {k} | {1e3 * dense:.2f} | {1e3 * sparse:.2f} | {sparse / dense:.2f}x |")


if __name__ == "__main__":
    main()
