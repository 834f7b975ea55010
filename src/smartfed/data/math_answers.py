"""Final-number extraction and matching for math word problems (GSM8K, MGSM en/zh, SVAMP, Ape210K).

The extractor prefers an explicit final answer ("#### 72", "The answer is 72", "答案是 72",
"\\boxed{72}") and falls back to the last number in the text. Numbers may carry thousands commas,
currency signs, units, percent signs, full-width digits, or be fractions ("3/4", "1(1/2)").
"""

import re
import unicodedata
from fractions import Fraction

_NUMBER = r"-?\d+(?:,\d{3})*(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?"
_FINAL_MARKERS = [
    r"####\s*\$?\s*(" + _NUMBER + ")",
    r"\\boxed\{\s*\$?\s*(" + _NUMBER + r")",
    r"(?:the\s+)?(?:final\s+)?answer\s*(?:is|:|=)?\s*[:：]?\s*\$?\s*\\?\(?\s*(" + _NUMBER + ")",
    r"答案\s*(?:是|为|：|:)?\s*[:：]?\s*\$?\s*(" + _NUMBER + ")",
]


# What may follow a complete number: a character that cannot continue it ("。", "元", "}", a letter), a line
# break, a full stop followed by white space, or white space and such a character ("72" may still become
# "72.5" or "72,000").
_AFTER_NUMBER = r"(?:[^\d\s,./]|\s*\n|\.\s|\s+[^\d\s,./])"
_ANSWER_GIVEN = [re.compile(marker + _AFTER_NUMBER, flags=re.IGNORECASE) for marker in _FINAL_MARKERS]


def answer_given(text: str) -> bool:
    """Whether `text` (an answer being generated) already states its final answer, complete: a marker that
    extract_answer reads ("答案是", "The answer is", "####", "\\boxed{") with a number that cannot grow any more.
    Generation of a math answer stops there (the instruction asks to finish with it)."""
    text = _normalise(text)
    return any(pattern.search(text) for pattern in _ANSWER_GIVEN)


def _normalise(text: str) -> str:
    # NFKC maps full-width digits and punctuation ("１２，３４５．５") to ASCII.
    text = unicodedata.normalize("NFKC", text)
    return text.replace("−", "-").replace("，", ",")


def extract_answer(text: str) -> str | None:
    """The final numeric answer in `text` as a plain string ("1234.5", "3/4", "-2"), or None."""
    text = _normalise(text)
    for pattern in _FINAL_MARKERS:
        matches = re.findall(pattern, text, flags=re.IGNORECASE)
        if matches:
            return _clean(matches[-1])
    numbers = re.findall(_NUMBER, text)
    return _clean(numbers[-1]) if numbers else None


def _clean(number: str) -> str:
    return re.sub(r"\s+", "", number.replace(",", "")).rstrip(".")


def to_fraction(value: str) -> Fraction | None:
    """'72' / '2.5' / '3/4' / '(1/5)' / '1(1/2)' (mixed number) / '25%' -> exact Fraction; None if not a number."""
    value = _normalise(str(value)).strip().replace(",", "").replace(" ", "")
    percent = value.endswith("%")
    value = value.rstrip("%")
    mixed = re.fullmatch(r"(-?\d+)\((\d+)/(\d+)\)", value)
    try:
        if mixed:
            whole, num, den = (int(g) for g in mixed.groups())
            result = whole + Fraction(num, den) * (1 if whole >= 0 else -1)
        else:
            value = value.strip("()")
            if "/" in value:
                num, den = value.split("/", 1)
                result = Fraction(num.strip("()")) / Fraction(den.strip("()"))
            else:
                result = Fraction(value)
    except (ValueError, ZeroDivisionError):
        return None
    return result / 100 if percent else result


def answers_match(predicted: str | None, gold: str, rel_tol: float = 1e-4) -> bool:
    """Exact for integers and fractions, relative tolerance for decimals (GSM-Hard has long floats)."""
    if predicted is None:
        return False
    p, g = to_fraction(predicted), to_fraction(gold)
    if p is None or g is None:
        return False
    if p == g:
        return True
    return abs(float(p) - float(g)) <= rel_tol * max(1.0, abs(float(g)))
