"""Scoring held-out items: `item_losses` (items batched by length, logits only from the batch's first
answer position) against the plain way (items in their order, logits over every position), side by side
in one run on the real SmolLM2-135M and the zh+math dev items; the per-item losses are checked equal.

    OMP_NUM_THREADS=2 python bench/eval_loss.py [--items 48] [--composition zh+math]   # ~3 min on 2 CPU cores
"""

import argparse
import statistics
import time

import torch

from smartfed.data import composition_splits
from smartfed.data.tokenize import collate, encode_for_training
from smartfed.eval.generate import item_losses
from smartfed.models import DEFAULT_MODEL, load_base_model


@torch.no_grad()
def plain_item_losses(model, tokenizer, examples, max_length=384, batch_size=8) -> list[tuple[float, int]]:
    """The reference: batches in the given order, full logits, loss on the answer tokens."""
    out = []
    pairs = [encode_for_training(tokenizer, e, max_length) for e in examples]
    for start in range(0, len(pairs), batch_size):
        batch = collate(pairs[start : start + batch_size], tokenizer.pad_token_id)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        labels = batch["labels"][:, 1:]
        nll = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=-100, reduction="none")
        out += list(zip(nll.sum(-1).tolist(), (labels != -100).sum(-1).tolist()))
    return out


def timed(fn, repeats: int) -> tuple[float, list]:
    times, result = [], None
    for _ in range(repeats):
        began = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - began)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--items", type=int, default=48)
    parser.add_argument("--composition", default="zh+math")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    model, tokenizer = load_base_model(DEFAULT_MODEL)
    model.eval()
    items = composition_splits(args.composition).dev[: args.items]
    plain_s, plain = timed(lambda: plain_item_losses(model, tokenizer, items), args.repeats)
    ours_s, ours = timed(lambda: item_losses(model, tokenizer, items), args.repeats)
    worst = max(abs(a[0] - b[0]) / max(abs(b[0]), 1e-9) for a, b in zip(ours, plain))
    assert [a[1] for a in ours] == [b[1] for b in plain] and worst < 1e-4, f"per-item losses differ (worst relative {worst:.2e})"
    print(f"{len(items)} {args.composition} dev items, {DEFAULT_MODEL}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"median of {args.repeats}\n")
    print("| scoring | seconds | / plain |\n|---|---:|---:|")
    print(f"| plain (given order, full logits) | {plain_s:.1f} | 1.00x |")
    print(f"| item_losses (by length, answer logits only) | {ours_s:.1f} | {ours_s / plain_s:.2f}x |")
    print(f"\nper-item losses equal to {worst:.1e} (relative)")


if __name__ == "__main__":
    main()
