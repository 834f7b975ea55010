"""What each default-pool module brings: the base model, then each module alone (its own PEFT LoRA),
on a sample of every suite and on the held-out loss of each skill. Prints a markdown table.

    python bench/pool_modules.py --limit 8     # ~25 min on 2 CPU cores
    python bench/pool_modules.py --only instruct   # one row (same numbers as in the full table)
"""

import argparse
import copy
import time

from peft import PeftModel

from smartfed.data import composition_splits
from smartfed.eval.generate import heldout_loss
from smartfed.eval.suites import run_suite
from smartfed.pool.resolve import default_pool_dir
from smartfed.models import DEFAULT_MODEL, load_base_model
from smartfed.pool.build import SKILLS, build_all

SUITES = ("gsm8k", "mgsm-zh", "humaneval", "mbpp")
LOSSES = ("zh+math", "math", "code", "zh")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=8, help="items per suite (the first N of each file)")
    parser.add_argument("--loss-examples", type=int, default=32)
    parser.add_argument("--only", default="", help="comma-separated rows to run, e.g. 'base model,instruct' (default: all)")
    args = parser.parse_args()

    folders = build_all(str(default_pool_dir(DEFAULT_MODEL)))
    base, tokenizer = load_base_model()
    heldout = {c: composition_splits(c).heldout[: args.loss_examples] for c in LOSSES}
    print(f"SmolLM2-135M-Instruct, greedy, first {args.limit} items per suite; held-out loss on {args.loss_examples} items per composition\n")
    print("| model | " + " | ".join(f"{s} (%)" for s in SUITES) + " | " + " | ".join(f"loss {c}" for c in LOSSES) + " | seconds |")
    print("|---|" + "---:|" * (len(SUITES) + len(LOSSES) + 1), flush=True)
    rows = [("base model", None), *zip(SKILLS, folders)]
    only = [name.strip() for name in args.only.split(",") if name.strip()]
    unknown = [name for name in only if name not in dict(rows)]
    if unknown:
        parser.error(f"--only {unknown[0]!r}: expected one of {', '.join(dict(rows))}")
    for name, folder in rows:
        if only and name not in only:
            continue
        began = time.time()
        model = PeftModel.from_pretrained(copy.deepcopy(base), folder).eval() if folder else base
        scores = {s: run_suite(model, tokenizer, s, args.limit).score for s in SUITES}
        losses = {c: heldout_loss(model, tokenizer, heldout[c]) for c in LOSSES}
        print(f"| {name} | " + " | ".join(f"{100 * scores[s]:.1f}" for s in SUITES) + " | "
              + " | ".join(f"{losses[c]:.3f}" for c in LOSSES) + f" | {time.time() - began:.0f} |", flush=True)


if __name__ == "__main__":
    main()
