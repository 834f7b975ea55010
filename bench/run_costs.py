"""What one federated run's parts cost on this machine, to size a sweep before running it: a client's
local step for each method, scoring one held-out item, and generating one benchmark answer, on the real
SmolLM2-135M with the default pool, at the scale `smartfed compare` uses (compare.STANDARD).

    OMP_NUM_THREADS=2 python bench/run_costs.py [--composition zh+math] [--methods smartfed,fedit] [--steps 4]
                                                [--items 48] [--generate 16]     # ~5 min on 2 CPU cores

Run two at once with OMP_NUM_THREADS=1 each to see what two sweeps side by side cost per run.
"""

import argparse
import time

from smartfed.compare import STANDARD
from smartfed.config import load_config
from smartfed.data import COMPOSITIONS
from smartfed.eval.generate import item_losses
from smartfed.eval.suites import run_suite
from smartfed.experts import get_quotas
from smartfed.fed.client import client_update
from smartfed.fed.workspace import client_partitions, heldout_set, load_model_side
from smartfed.methods import get_method


def seconds(fn) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--composition", default="zh+math")
    parser.add_argument("--methods", default="smartfed,fedit")
    parser.add_argument("--steps", type=int, default=4, help="local steps timed per method (one client update)")
    parser.add_argument("--items", type=int, default=48, help="held-out items scored")
    parser.add_argument("--generate", type=int, default=16, help="items of each benchmark suite answered (0: skip)")
    args = parser.parse_args()
    rows = []
    for name in args.methods.split(","):
        config = load_config(base=STANDARD | {"data.composition": args.composition, "run.method": name, "training.local_steps": args.steps})
        side = load_model_side(config)
        method = get_method(name)
        examples = client_partitions(config)[0]
        state = method.state_dict(side.model)
        client_update(config, side.model, side.tokenizer, state, get_quotas(side.model), examples, seed=1)  # warm-up
        step = seconds(lambda: client_update(config, side.model, side.tokenizer, state, get_quotas(side.model), examples, seed=2)) / args.steps
        items = heldout_set(load_config(base=config.flat() | {"eval.examples": args.items, "eval.curve_examples": 0}))
        score = seconds(lambda: item_losses(side.model, side.tokenizer, items, max_length=384)) / len(items)
        rows.append((name, step, score))
        if args.generate and name == args.methods.split(",")[0]:
            for suite in COMPOSITIONS[args.composition].eval_suites:
                per_item = seconds(lambda: run_suite(side.model, side.tokenizer, suite, args.generate)) / args.generate
                print(f"generate {suite}: {per_item:.2f} s per item ({args.generate} items, {name})")
    print(f"\n{args.composition}, batch {config.training.batch_size}, max_length {config.training.max_length}\n")
    print("| method | s per local step | s per held-out item scored |\n|---|---:|---:|")
    for name, step, score in rows:
        print(f"| {name} | {step:.2f} | {score:.3f} |")


if __name__ == "__main__":
    main()
