"""Batched greedy generation and teacher-forced loss on chat prompts."""

import torch
from tqdm.auto import tqdm

from smartfed.data.records import Example, chat_prompt
from smartfed.data.tokenize import collate, encode_for_training


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
        batch = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False).to(next(model.parameters()).device)
        out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        for row, i in enumerate(idx):
            outputs[i] = tokenizer.decode(out[row, batch["input_ids"].shape[1] :], skip_special_tokens=True)
    return outputs


@torch.no_grad()
def item_losses(model, tokenizer, examples: list[Example], max_length: int = 384, batch_size: int = 8,
                desc: str = "loss") -> list[tuple[float, int]]:
    """(summed NLL, answer tokens) of each example, teacher forced: what per-item statistics need."""
    model.eval()
    out, device = [], next(model.parameters()).device
    pairs = [encode_for_training(tokenizer, e, max_length) for e in examples]
    for start in tqdm(range(0, len(pairs), batch_size), desc=desc, unit="batch", leave=False):
        batch = collate(pairs[start : start + batch_size], tokenizer.pad_token_id, device)
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
        labels = batch["labels"][:, 1:]
        nll = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), labels, ignore_index=-100, reduction="none")  # (B, T) fp32
        sums, counts = nll.sum(-1).tolist(), (labels != -100).sum(-1).tolist()  # sync point, once per batch
        out += list(zip(sums, counts))
    return out


def heldout_loss(model, tokenizer, examples: list[Example], max_length: int = 384, batch_size: int = 8, desc: str = "loss") -> float:
    """Mean NLL per reference-answer token (teacher forced), over all of `examples`."""
    items = item_losses(model, tokenizer, examples, max_length, batch_size, desc)
    return sum(t for t, _ in items) / max(sum(n for _, n in items), 1)
