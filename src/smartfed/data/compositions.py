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
- single skills: math, code, zh, instruct (the default pool's modules are trained on these), and two
  more for the coverage study's matched modules: math-eqn (GSM8K train questions in English, answered
  in Ape210K's `列式：… 答案是 …` format) and math-pal (GSM8K-PAL, math+code's own math source).

Each composition's own sources split by a hash of the item id into a held-out 10% (reported
numbers only), a dev 5% (choosing settings: learning rates, gates, k) and the training rest, with
no id or prompt shared between any two; benchmark suites (MGSM, GSM-Hard, HumanEval, MBPP test)
are separate sources. The dev and held-out items come one source at a time in turn, so the first N
(what a run scores) cover every source while it lasts.

The split is per source: sources derived from one dataset (gsm8k-train, gsm8k-eqn-train, gsm8k-pal-train:
the same GSM8K questions in three answer formats) have other ids, so a question one composition holds
out can be a training question of another composition's module (the default pool's math module saw 19
of math+code's 200 reported held-out questions, with chain-of-thought answers). Keying them on the
upstream question would move every committed run's held-out items; `experiments/overlap.py` finds
such items from the modules' cards and compares the runs without them.
"""

import hashlib
import itertools
import re
from dataclasses import dataclass
from typing import NamedTuple

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
        Composition("math-eqn", ("gsm8k-eqn-train",), (), note="zh+math's answer format on English questions"),
        Composition("math-pal", ("gsm8k-pal-train",), (), note="math+code's program format and source"),
    ]
}


HELDOUT_SHARE, DEV_SHARE = 0.10, 0.05


class Splits(NamedTuple):
    train: list[Example]
    dev: list[Example]
    heldout: list[Example]


def _position(example_id: str) -> float:
    """A stable number in [0, 1) for an item: [0, 0.10) held-out, [0.10, 0.15) dev, the rest train."""
    return int.from_bytes(hashlib.sha256(example_id.encode()).digest()[:8], "big") / 2**64


def _part(example_id: str) -> str:
    position = _position(example_id)
    return "heldout" if position < HELDOUT_SHARE else "dev" if position < HELDOUT_SHARE + DEV_SHARE else "train"


def _examples(name: str, data_dir) -> list[Example]:
    if name not in COMPOSITIONS:
        raise DataError(f"unknown composition '{name}': expected one of {', '.join(COMPOSITIONS)}")
    return [e for source in COMPOSITIONS[name].train_sources for e in load_source(source, data_dir)]


def _by_source_in_turn(examples: list[Example]) -> list[Example]:
    """One item of each source in turn (each source in its own order) until a source runs out, then the rest:
    the first N items of a split, what a run scores, hold every skill of the composition, not the first source's."""
    queues = {}
    for e in examples:
        queues.setdefault(e.source, []).append(e)
    return [e for row in itertools.zip_longest(*queues.values()) for e in row if e is not None]


def heldout_split(name: str, data_dir=None) -> list[Example]:
    """Only the held-out items (what a server evaluates on), sources in turn; the others are dropped as they are read."""
    return _by_source_in_turn([e for e in _examples(name, data_dir) if _part(e.id) == "heldout"])


def normalised_prompt(text: str) -> str:
    """A prompt as duplicates are found: whitespace runs as one space, lower case."""
    return re.sub(r"\s+", " ", text).strip().lower()


def composition_splits(name: str, data_dir=None) -> Splits:
    """(train, dev, held-out) examples of composition `name`; no two share an id or a prompt."""
    parts: dict[str, list[Example]] = {"train": [], "dev": [], "heldout": []}
    for e in _examples(name, data_dir):
        parts[_part(e.id)].append(e)
    heldout_prompts = {normalised_prompt(e.prompt) for e in parts["heldout"]}
    dev = [e for e in parts["dev"] if normalised_prompt(e.prompt) not in heldout_prompts]  # upstream duplicates
    taken = heldout_prompts | {normalised_prompt(e.prompt) for e in dev}
    train = [e for e in parts["train"] if normalised_prompt(e.prompt) not in taken]
    for a, b in ((train, parts["heldout"]), (train, dev), (dev, parts["heldout"])):
        assert_disjoint(a, b)
    return Splits(train, _by_source_in_turn(dev), _by_source_in_turn(parts["heldout"]))


def assert_disjoint(train: list[Example], heldout: list[Example]) -> None:
    ids = {e.id for e in train} & {e.id for e in heldout}
    prompts = {normalised_prompt(e.prompt) for e in train} & {normalised_prompt(e.prompt) for e in heldout}
    if ids or prompts:
        raise AssertionError(f"two splits share {len(ids)} ids and {len(prompts)} prompts, e.g. {sorted(ids)[:3]}")
