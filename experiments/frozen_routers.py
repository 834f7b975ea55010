"""How many of a SmartFed run's routers EEQA leaves with one expert, round by round, and why those stop learning.

Under the `scaled` gate (SmartFed's default; also `softmax`) a matrix whose quota is k = 1 gives its one kept expert
the weight 1 whatever the router's logits: the top-1 choice is an argmax, so no gradient reaches that router. EEQA's
floor is `eeqa.k_min` = 1. This prints, for each run with EEQA on, the matrices at k = 1 in each listed round
(the quotas each round trained with, from metrics.jsonl), and checks the gate's gradient at k = 1 and k = 2 with autograd.

    .venv/bin/python experiments/frozen_routers.py docs/results/zh+math docs/results/math+code docs/results/zh+code*   # seconds
"""

import argparse
import json
from pathlib import Path

import torch

from smartfed.config import load_config
from smartfed.routers.gates import GATES

ROUNDS = (1, 2, 3, 5, 7, 10, 15, 20)


def gate_gradient(gate: str, k: int) -> float:
    """The largest |d sum(expert weights * values) / d logits| of `gate` at quota k, on random logits and values."""
    torch.manual_seed(0)
    logits = torch.randn(4, 8, requires_grad=True)
    (GATES[gate](logits, k) * torch.randn(4, 8)).sum().backward()
    return logits.grad.abs().max().item()


def at_one(run: Path) -> tuple[str, int, dict[int, int]] | None:
    """(gate, matrices, {round: matrices at k = 1}) of a run with EEQA on; None for others."""
    config = load_config(run / "config.toml")
    if not config.eeqa.enabled or config.run.method != "smartfed":
        return None
    counts, matrices = {}, 0
    for line in (run / "metrics.jsonl").read_text().splitlines():
        record = json.loads(line)
        if record.get("quotas"):
            matrices = len(record["quotas"])
            counts[record["round"]] = sum(k == 1 for k in record["quotas"].values())
    return config.router.gate, matrices, counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, help="results folders holding run folders")
    args = parser.parse_args()
    for gate in GATES:
        print(f"gate {gate}: largest |gradient| at k=1 {gate_gradient(gate, 1):.3g}, at k=2 {gate_gradient(gate, 2):.3g}")
    print("\n| run | gate | matrices | " + " | ".join(f"k=1 in round {r}" for r in ROUNDS) + " |")
    print("|---|---|---:|" + "---:|" * len(ROUNDS))
    for folder in args.folders:
        for run in sorted(p.parent for p in folder.glob("*/summary.json")):
            found = at_one(run)
            if found:
                gate, matrices, counts = found
                print(f"| {run.parent.name}/{run.name} | {gate} | {matrices} | " + " | ".join(str(counts.get(r, "-")) for r in ROUNDS) + " |")


if __name__ == "__main__":
    main()
