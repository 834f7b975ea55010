"""GSM8K's calculator annotations turned into other answer formats: a Python `solution()` (program-aided
math, the math+code task's format) or an equation chain in Ape210K's format (`列式：… 答案是 …`, the
zh+math task's format, for the coverage study's matched module).

Every GSM8K reference answer marks its arithmetic as <<expression=result>>. For a program, each
annotation becomes one assignment, the line of prose around it a comment, and the last one the return
value. An item is kept only if its program (or its last equation) gives the reference answer. The
programs are pure arithmetic (checked by a whitelist of characters) and are evaluated with no builtins.
"""

import re

from smartfed.data.math_answers import answers_match

_ANNOTATION = re.compile(r"<<([^=<>]+)=([^<>]*)>>")
_ARITHMETIC = re.compile(r"^[\d\s.+\-*/()]+$")


def pal_program(raw_answer: str, final: str) -> str | None:
    """A `solution()` program for one GSM8K answer, or None if it can't be built or is wrong."""
    reasoning = raw_answer.rsplit("####", 1)[0]
    lines, last = ["def solution():"], None
    for n, line in enumerate(l for l in reasoning.splitlines() if l.strip()):
        lines.append(f"    # {_ANNOTATION.sub('', line).strip()}")  # the result follows each annotation in the prose
        for expression, _ in _ANNOTATION.findall(line):
            if not _ARITHMETIC.match(expression):
                return None
            last = f"step{n}"
            lines.append(f"    {last} = {expression.strip()}")
    if last is None:
        return None
    lines.append(f"    return {last}")
    program = "\n".join(lines)
    scope: dict = {}
    try:
        exec(program, {"__builtins__": {}}, scope)  # arithmetic only: see _ARITHMETIC
        value = scope["solution"]()
    except (ArithmeticError, SyntaxError, TypeError):
        return None
    return program if answers_match(str(value), final) else None


def equation_answer(raw_answer: str, final: str) -> str | None:
    """`列式：e1=r1；e2=r2\n答案是 N。` from one GSM8K answer's annotations, or None if there are none,
    one is not arithmetic, or the last result is not the reference answer."""
    steps = _ANNOTATION.findall(raw_answer.rsplit("####", 1)[0])
    if not steps or not all(_ARITHMETIC.match(expression) for expression, _ in steps):
        return None
    if not answers_match(steps[-1][1].strip(), final):
        return None
    chain = "；".join(f"{expression.strip()}={result.strip()}" for expression, result in steps)
    return f"列式：{chain}\n答案是 {final}。"
