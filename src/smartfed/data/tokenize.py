"""Training tokenisation: chat prompt + answer as ids with the prompt masked out, and right-padded batches."""

import torch

from smartfed.data.records import Example, chat_prompt, task_prompt


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


def collate(pairs: list[tuple[list[int], list[int]]], pad_id: int, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """Right-pad a batch of (ids, labels) to its longest row, on `device` (the model's)."""
    width = max(len(ids) for ids, _ in pairs)
    ids = torch.full((len(pairs), width), pad_id)
    labels = torch.full((len(pairs), width), -100)
    mask = torch.zeros((len(pairs), width), dtype=torch.long)
    for row, (i, l) in enumerate(pairs):
        ids[row, : len(i)], labels[row, : len(l)], mask[row, : len(i)] = torch.tensor(i), torch.tensor(l), 1
    return {"input_ids": ids.to(device), "labels": labels.to(device), "attention_mask": mask.to(device)}
