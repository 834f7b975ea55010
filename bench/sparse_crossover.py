"""Where the sparse top-k path pays: one routed layer (d_in = d_out = 576, SmolLM2-135M's q_proj, unless --d;
1,024 tokens; linear router), forward + backward, dense (all M experts, then the gate) against sparse (only the
k kept experts, gathered), for M experts and quota k, side by side in one run (median of repeats).

    python bench/sparse_crossover.py                                   # ~1 min on 2 CPU cores
    python bench/sparse_crossover.py --device cuda --dtype bfloat16 --d 3584   # a GPU, at Qwen2-7B's width too
"""

import argparse
import statistics
import time

import torch
from torch import nn

from smartfed.experts.layer import RoutedLinear
from smartfed.models import DTYPES, resolve_device
from smartfed.pool.expert_pool import MatrixExperts
from smartfed.routers import build_router

TOKENS, REPEATS = 1024, 7


def layer(d: int, num_experts: int, k: int, sparse: bool, device: torch.device, dtype: torch.dtype) -> RoutedLinear:
    g = torch.Generator().manual_seed(0)
    experts = MatrixExperts(torch.randn(num_experts, d, generator=g) * 0.02, torch.randn(d, num_experts, generator=g) * 0.02,
                            torch.ones(num_experts), torch.zeros(num_experts, dtype=torch.int32), torch.arange(num_experts, dtype=torch.int32))
    base = nn.Linear(d, d, device=device, dtype=dtype).requires_grad_(False)
    torch.manual_seed(0)
    return RoutedLinear(base, experts, build_router("linear", experts, init_std=0.1), k, sparse=sparse)  # experts follow the base layer


def step_time(module: RoutedLinear, x: torch.Tensor) -> float:
    times = []
    for _ in range(REPEATS):
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)  # a sync point, for timing only
        began = time.perf_counter()
        module(x).sum().backward()
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        times.append(time.perf_counter() - began)
    return statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--d", type=int, default=576, help="d_in = d_out of the layer")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | mps")
    parser.add_argument("--dtype", default="float32", choices=list(DTYPES), help="the base layer's (routers keep fp32)")
    args = parser.parse_args()
    device, dtype = resolve_device(args.device), DTYPES[args.dtype]
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{torch.get_num_threads()} threads"
    x = torch.randn(TOKENS, args.d, generator=torch.Generator().manual_seed(1)).to(device, dtype)
    print(f"one routed layer, d = {args.d}, {TOKENS} tokens, forward + backward, {args.dtype} on {where}, torch {torch.__version__}\n")
    print("| M | k | dense ms | sparse ms | sparse / dense |\n|---:|---:|---:|---:|---:|")
    for num_experts in (8, 32, 128, 512):
        for k in (1, 2, 4, 8):
            if k >= num_experts:
                continue
            dense = step_time(layer(args.d, num_experts, k, False, device, dtype), x)
            sparse = step_time(layer(args.d, num_experts, k, True, device, dtype), x)
            print(f"| {num_experts} | {k} | {1e3 * dense:.2f} | {1e3 * sparse:.2f} | {sparse / dense:.2f}x |")


if __name__ == "__main__":
    main()
