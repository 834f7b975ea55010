"""Skill compositions: each client's private data, a held-out split, and non-IID partitions.

A composition is the data a federation of devices would hold for one combination of skills. The
paper's three are Chinese+math, Chinese+code and math+code (SPEC section 4). What is here:

- zh+math: Chinese math word problems (Ape210K; its 5,000-row "valid" file is the train pool).
- math+code: program-aided math, GSM8K train questions answered by a Python `solution()` that we
  derive from GSM8K's own calculator annotations (see pal.py), plus MBPP train tasks.
- zh+code: **a substitute**. No Chinese code-instruction set is available here, so clients hold
  Chinese instructions (alpaca-zh) and English code instructions (CodeAlpaca) side by side: the
  two skills, not their intersection. The only Chinese code prompts found (38 in BELLE eval) are
  kept for evaluation.
- single skills: math, code, zh, instruct.

The held-out split is a stable 10% of the composition's own sources (by a hash of the item id),
never trained on; benchmark suites (MGSM, GSM-Hard, HumanEval, MBPP test) are separate sources.
"""

import hashlib
import re
from dataclasses import dataclass

from smartfed.data.records import Example
from smartfed.data.sources import DataError, load_source


@dataclass(frozen=True)
class Composition:
    name: str
    train_sources: tuple[str, ...]
    eval_suites: tuple[str, ...]  # benchmark suites (smartfed.eval.suites) that measure it
    note: str = ""


COMPOSITIONS = {
    c.name: c
    for c in [
        Composition("zh+math", ("ape210k-train",), ("mgsm-zh", "ape210k")),
        Composition("math+code", ("gsm8k-pal-train", "mbpp-train"), ("gsm-hard-pal", "mbpp")),
        Composition("zh+code", ("alpaca-zh", "codealpaca"), ("humaneval", "mbpp"),
                    note="substitute: Chinese instructions and English code instructions side by side"),
        Composition("math", ("gsm8k-train",), ("gsm8k", "mgsm-en")),
        Composition("code", ("codealpaca", "mbpp-train"), ("humaneval", "mbpp")),
        Composition("zh", ("alpaca-zh",), ()),
        Composition("instruct", ("alpaca-en",), ()),
    ]
}


def _is_heldout(example_id: str, fraction: float) -> bool:
    digest = hashlib.sha256(example_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 < fraction


def _normalised(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip().lower()


def composition_splits(name: str, data_dir=None, heldout_fraction: float = 0.1) -> tuple[list[Example], list[Example]]:
    """(train, held-out) examples of composition `name`; they never share an id or a prompt."""
    if name not in COMPOSITIONS:
        raise DataError(f"unknown composition '{name}': expected one of {', '.join(COMPOSITIONS)}")
    examples = [e for source in COMPOSITIONS[name].train_sources for e in load_source(source, data_dir)]
    train = [e for e in examples if not _is_heldout(e.id, heldout_fraction)]
    heldout = [e for e in examples if _is_heldout(e.id, heldout_fraction)]
    heldout_prompts = {_normalised(e.prompt) for e in heldout}
    train = [e for e in train if _normalised(e.prompt) not in heldout_prompts]  # upstream duplicates
    assert_disjoint(train, heldout)
    return train, heldout


def assert_disjoint(train: list[Example], heldout: list[Example]) -> None:
    ids = {e.id for e in train} & {e.id for e in heldout}
    prompts = {_normalised(e.prompt) for e in train} & {_normalised(e.prompt) for e in heldout}
    if ids or prompts:
        raise AssertionError(f"train and held-out share {len(ids)} ids and {len(prompts)} prompts, e.g. {sorted(ids)[:3]}")
