"""Evaluation suites: math exact match, GSM-Hard program-aided, code pass@1, held-out loss."""

import re
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from smartfed.data import Example, load_source
from smartfed.data.records import task_prompt
from smartfed.eval.generate import generate
from smartfed.data.math_answers import answer_given, answers_match, extract_answer
from smartfed.eval.sandbox import run_program



@dataclass(frozen=True)
class Suite:
    name: str
    source: str
    kind: str  # "math" | "pal" | "code"
    max_new_tokens: int


SUITES = {
    s.name: s
    for s in [
        Suite("gsm8k", "gsm8k-test", "math", 256),
        Suite("mgsm-en", "mgsm-en", "math", 256),
        Suite("mgsm-zh", "mgsm-zh", "math", 256),
        Suite("svamp", "svamp", "math", 192),
        Suite("asdiv", "asdiv", "math", 192),
        Suite("ape210k", "ape210k-test", "math", 192),
        Suite("gsm-hard", "gsm-hard", "math", 256),
        Suite("gsm-hard-pal", "gsm-hard", "pal", 256),
        Suite("humaneval", "humaneval", "code", 384),
        Suite("mbpp", "mbpp-test", "code", 384),
    ]
}


@dataclass
class SuiteResult:
    suite: str
    n: int
    score: float  # accuracy or pass@1, in [0, 1]
    items: list[dict] = field(default_factory=list)


_FENCED = re.compile(r"```(?:python|py)?\s*\n(.*?)```", flags=re.DOTALL)


def extract_code(text: str) -> str:
    """The first fenced code block that defines something, else the first block, else the raw text."""
    blocks = _FENCED.findall(text)
    if not blocks and "```" in text:  # an unterminated block (generation hit the token limit)
        blocks = [text.split("```", 1)[1].split("\n", 1)[-1]]
    for block in blocks:
        if "def " in block:
            return block
    return blocks[0] if blocks else text


def program_given(text: str) -> bool:
    """True once `text` has a closed fenced block that defines something: no later text changes what
    `extract_code` takes, so generation can stop there (the explanation the model writes after its code)."""
    return any("def " in block for block in _FENCED.findall(text))


def _code_program(example: Example, output: str) -> str:
    code = extract_code(output)
    if example.entry_point and f"def {example.entry_point}" not in code:
        stub = extract_code(example.prompt)  # HumanEval: the model may write only the body
        code = stub + code
    return f"{code}\n\n{example.tests}\n"


def _pal_answer(output: str) -> str | None:
    result = run_program(extract_code(output) + "\nprint(solution())\n", timeout=5, memory_mb=512)
    lines = result.output.strip().splitlines()
    return extract_answer(lines[-1]) if result.passed and lines else None


def run_suite(model, tokenizer, name: str, limit: int | None = None, batch_size: int = 16, data_dir=None,
              shard: tuple[int, int] = (0, 1), max_new_tokens: int = 0) -> SuiteResult:
    """Score `model` on the first `limit` items of suite `name` (the order of the upstream file);
    `shard=(i, n)` keeps only items i, i+n, ... of those (several models sharing one suite);
    `max_new_tokens` caps the suite's own generation limit (0: no cap)."""
    if name not in SUITES:
        raise ValueError(f"unknown suite '{name}': expected one of {', '.join(SUITES)}")
    suite = SUITES[name]
    examples = load_source(suite.source, data_dir)[:limit][shard[0] :: shard[1]]
    if suite.kind == "pal":  # the same questions, asked for a program
        examples = [replace(e, style="pal") for e in examples]
    limit_tokens = min(suite.max_new_tokens, max_new_tokens or suite.max_new_tokens)
    # a row stops once its score is fixed: a math answer at its final number, a program at its closed code block
    outputs = generate(model, tokenizer, [task_prompt(e) for e in examples], limit_tokens, batch_size, desc=name,
                       stop_when=answer_given if suite.kind == "math" else program_given)
    score: Callable[[Example, str], tuple[str | None, bool]]
    if suite.kind == "math":
        def score(e, out):
            pred = extract_answer(out)
            return pred, answers_match(pred, e.answer)
    elif suite.kind == "pal":
        def score(e, out):
            pred = _pal_answer(out)
            return pred, answers_match(pred, e.answer)
    else:
        def score(e, out):
            result = run_program(_code_program(e, out), timeout=10, memory_mb=1024, require_marker=True)
            return result.status, result.passed
    with ThreadPoolExecutor(max_workers=2) as pool:  # sandbox runs are processes: overlap them
        scored = list(pool.map(score, examples, outputs))
    items = [{"id": e.id, "output": out, "predicted": pred, "correct": ok} for e, out, (pred, ok) in zip(examples, outputs, scored)]
    return SuiteResult(name, len(items), sum(i["correct"] for i in items) / max(len(items), 1), items)
