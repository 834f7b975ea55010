"""What a robust aggregation rule costs against plain FedAvg, side by side in one run.

One round of K client updates shaped like SmolLM2-135M's `linear` routers over the default pool
(210 matrices x 32 experts x d_in, 4.8M parameters a client), each rule timed on the same updates:
the server's add() for every update plus result(), interleaved over repeats (median). The robust
rules hold the round's K updates (their memory is K x the state); FedAvg holds one running sum.

    python bench/aggregation.py [--clients 10] [--repeats 5]   # ~1 min on 2 CPU cores
"""

import argparse
import statistics
import time

import torch

from smartfed.fed.server import new_aggregate, state_norm

RULES = ("fedavg", "clipped-fedavg", "trimmed-mean", "median")
SHAPES = {"d576": (32, 576), "d1536": (32, 1536)}
COUNTS = {"d576": 180, "d1536": 30}  # SmolLM2-135M: 6 of 7 types read d_in = 576, down_proj 1536; 30 layers


def updates(clients: int) -> tuple[dict, list[tuple[dict, int]]]:
    g = torch.Generator().manual_seed(0)
    reference = {f"{kind}.{i}": torch.randn(*SHAPES[kind], generator=g) * 0.01 for kind, n in COUNTS.items() for i in range(n)}
    out = [({k: v + torch.randn(v.shape, generator=g) * 0.005 for k, v in reference.items()}, 10 + c) for c in range(clients)]
    return reference, out


def time_rule(rule: str, reference: dict, round_updates: list) -> float:
    began = time.perf_counter()
    aggregate = new_aggregate(rule, reference)
    for state, n in round_updates:
        aggregate.add(state, n)
    aggregate.result()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    reference, round_updates = updates(args.clients)
    params = sum(v.numel() for v in reference.values())
    times = {rule: [] for rule in RULES}
    for _ in range(args.repeats):
        for rule in RULES:
            times[rule].append(time_rule(rule, reference, round_updates))
    base = statistics.median(times["fedavg"])
    print(f"{args.clients} clients, {params / 1e6:.1f}M parameters each (||reference|| = {state_norm(reference):.2f}), "
          f"{args.repeats} repeats, torch threads {torch.get_num_threads()}")
    print("| rule | median s per round | vs fedavg | updates held |\n|---|---:|---:|---:|")
    for rule in RULES:
        held = 1 if rule == "fedavg" else args.clients
        print(f"| {rule} | {statistics.median(times[rule]):.3f} | {statistics.median(times[rule]) / base:.2f}x | {held} |")


if __name__ == "__main__":
    main()
