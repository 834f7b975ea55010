"""One training or evaluation item, whatever its source."""

from dataclasses import dataclass

SKILLS = ("math", "code", "zh", "instruct")


@dataclass(frozen=True)
class Example:
    id: str  # "<source>/<upstream id or row number>", stable across runs and machines
    prompt: str  # the user's message, before any chat template
    target: str  # the reference answer a model is trained on / scored against
    skill: str  # one of SKILLS
    language: str  # "en" or "zh"
    source: str
    answer: str | None = None  # math: the final numeric answer
    tests: str | None = None  # code: a program that raises if the solution is wrong
    entry_point: str | None = None  # code: the function the tests call
    style: str = "plain"  # how the task is asked: "plain", "math" (reason, then the answer), "pal" (a program) or "equation" (列式：…)


INSTRUCTIONS = {
    ("math", "en"): "\nSolve it step by step, then finish with: The answer is <number>.",
    ("math", "zh"): "\n请逐步解答，最后写：答案是 <数字>。",
    ("pal", "en"): "\nWrite a Python function `solution()` that computes and returns the answer. Reply with the code only.",
    ("equation", "en"): "\nWrite the equations, then the answer: 列式：<equations>\n答案是 <number>。",
}


def task_prompt(example: Example) -> str:
    """The user message for `example`: its prompt plus the instruction of its style, the same in training and eval."""
    return example.prompt + INSTRUCTIONS.get((example.style, example.language), "")


def chat_prompt(tokenizer, prompt: str) -> str:
    """The prompt as the model expects it: its chat template where it has one, else the raw text."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
    return prompt + "\n"
