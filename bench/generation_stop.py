"""Code and program-aided answers stop at their first closed code block that defines something
(`suites.program_given`): generated tokens and time with the stop and without it, side by side in one run
on the real SmolLM2-135M, and the programs `extract_code` takes from both, checked equal.

    OMP_NUM_THREADS=1 python bench/generation_stop.py [--items 8] [--suites mbpp,gsm-hard-pal]   # ~4 min on one core
"""

import argparse
import time
from dataclasses import replace

from smartfed.data import load_source
from smartfed.data.records import task_prompt
from smartfed.eval.generate import generate
from smartfed.eval.suites import SUITES, extract_code, program_given
from smartfed.models import DEFAULT_MODEL, load_base_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=8)
    parser.add_argument("--suites", default="mbpp,gsm-hard-pal")
    args = parser.parse_args()
    model, tokenizer = load_base_model(DEFAULT_MODEL)
    print(f"| suite | items | tokens without the stop | with it | time without (s) | with (s) | same programs |\n|---|---:|---:|---:|---:|---:|---|")
    for name in args.suites.split(","):
        suite = SUITES[name]
        examples = load_source(suite.source)[: args.items]
        if suite.kind == "pal":
            examples = [replace(e, style="pal") for e in examples]
        prompts = [task_prompt(e) for e in examples]
        runs = {}
        for stop in (None, program_given):
            began = time.perf_counter()
            outputs = generate(model, tokenizer, prompts, suite.max_new_tokens, len(prompts), stop_when=stop)
            tokens = sum(len(tokenizer(o, add_special_tokens=False)["input_ids"]) for o in outputs)
            runs[stop] = (outputs, tokens, time.perf_counter() - began)
        (full, full_tokens, full_s), (stopped, stopped_tokens, stopped_s) = runs[None], runs[program_given]
        same = all(extract_code(a) == extract_code(b) for a, b in zip(full, stopped))
        print(f"| {name} | {len(prompts)} | {full_tokens} | {stopped_tokens} | {full_s:.0f} | {stopped_s:.0f} | {'yes' if same else 'NO'} |")


if __name__ == "__main__":
    main()
