"""Batched greedy generation and teacher-forced loss on chat prompts."""

import torch
from tqdm.auto import tqdm

from smartfed.data.records import Example, chat_prompt, task_prompt


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], max_new_tokens: int = 256, batch_size: int = 8, desc: str = "generate") -> list[str]:
    """Greedy completions of chat `prompts` (raw user messages), in order."""
    model.eval()
    tokenizer.padding_side = "left"  # decoder-only: pad on the left so every row ends at the prompt
    texts = [chat_prompt(tokenizer, p) for p in prompts]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths batch together
    outputs: list[str] = [""] * len(texts)
    for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", leave=False):
        idx = order[start : start + batch_size]
        batch = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False)
        out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        for row, i in enumerate(idx):
            outputs[i] = tokenizer.decode(out[row, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    return outputs


def encode_for_training(tokenizer, example: Example, max_length: int) -> tuple[list[int], list[int]]:
    """(input ids, labels) for prompt + target; prompt tokens are labelled -100 so only the answer counts.

    Too long for `max_length`: the answer keeps up to half the budget and the prompt loses its start
    (its end carries the chat template's assistant marker), so every example trains on some answer.
    """
    prompt_ids = tokenizer(chat_prompt(tokenizer, task_prompt(example)), add_special_tokens=False)["input_ids"]
    target_ids = tokenizer(example.target + (tokenizer.eos_token or ""), add_special_tokens=False)["input_ids"]
    if len(prompt_ids) + len(target_ids) > max_length:
        keep_prompt = max(max_length - len(target_ids), max_length // 2)
        prompt_ids = prompt_ids[-keep_prompt:]
        target_ids = target_ids[: max_length - len(prompt_ids)]
    return prompt_ids + target_ids, [-100] * len(prompt_ids) + target_ids


def collate(pairs: list[tuple[list[int], list[int]]], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-pad a batch of (ids, labels) to its longest row."""
    width = max(len(ids) for ids, _ in pairs)
    ids = torch.full((len(pairs), width), pad_id)
    labels = torch.full((len(pairs), width), -100)
    mask = torch.zeros((len(pairs), width), dtype=torch.long)
    for row, (i, l) in enumerate(pairs):
        ids[row, : len(i)], labels[row, : len(l)], mask[row, : len(i)] = torch.tensor(i), torch.tensor(l), 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


@torch.no_grad()
def heldout_loss(model, tokenizer, examples: list[Example], max_length: int = 384, batch_size: int = 8, desc: str = "loss") -> float:
    """Mean NLL per reference-answer token (teacher forced), over all of `examples`."""
    model.eval()
    total, count = 0.0, 0
    pairs = [encode_for_training(tokenizer, e, max_length) for e in examples]
    for start in tqdm(range(0, len(pairs), batch_size), desc=desc, unit="batch", leave=False):
        batch = collate(pairs[start : start + batch_size], tokenizer.pad_token_id)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        labels = batch["labels"][:, 1:]
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, ignore_index=-100, reduction="sum")
        total += nll.item()  # sync point, once per batch
        count += int((labels != -100).sum())
    return total / max(count, 1)
