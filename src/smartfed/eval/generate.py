"""Batched greedy generation and teacher-forced loss on chat prompts."""

from collections.abc import Callable

import torch
from tqdm.auto import tqdm
from transformers import StoppingCriteria, StoppingCriteriaList

from smartfed.data.records import Example, chat_prompt
from smartfed.data.tokenize import collate, encode_for_training


class _RowsDone(StoppingCriteria):
    """Per row: its completion so far satisfies `done` (a row that is done stops; the others go on)."""

    def __init__(self, tokenizer, prompt_length: int, done: Callable[[str], bool]):
        self.tokenizer, self.prompt_length, self.done = tokenizer, prompt_length, done

    def __call__(self, input_ids: torch.Tensor, scores, **kwargs) -> torch.Tensor:
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_length :], skip_special_tokens=True)
        return torch.tensor([self.done(t) for t in texts], dtype=torch.bool, device=input_ids.device)


@torch.no_grad()
def generate(model, tokenizer, prompts: list[str], max_new_tokens: int = 256, batch_size: int = 8, desc: str = "generate",
             stop_when: Callable[[str], bool] | None = None) -> list[str]:
    """Greedy completions of chat `prompts` (raw user messages), in order; a row also stops once
    `stop_when(its completion so far)` holds (a math answer that has stated its final number)."""
    model.eval()
    tokenizer.padding_side = "left"  # decoder-only: pad on the left so every row ends at the prompt
    texts = [chat_prompt(tokenizer, p) for p in prompts]
    order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths batch together
    outputs: list[str] = [""] * len(texts)
    for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", leave=False):
        idx = order[start : start + batch_size]
        batch = tokenizer([texts[i] for i in idx], return_tensors="pt", padding=True, add_special_tokens=False).to(next(model.parameters()).device)
        prompt_length = batch["input_ids"].shape[1]
        stopping = StoppingCriteriaList([_RowsDone(tokenizer, prompt_length, stop_when)]) if stop_when else None
        out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id,
                             stopping_criteria=stopping)
        for row, i in enumerate(idx):
            outputs[i] = tokenizer.decode(out[row, prompt_length:], skip_special_tokens=True)
    return outputs


@torch.no_grad()
def item_losses(model, tokenizer, examples: list[Example], max_length: int = 384, batch_size: int = 8,
                desc: str = "loss") -> list[tuple[float, int]]:
    """(summed NLL, answer tokens) of each example, teacher forced: what per-item statistics need.

    Items are batched by length (less padding) and the model computes logits only from the first answer
    position of the batch on (`logits_to_keep`): the prompt's logits over the vocabulary are never made.
    """
    model.eval()
    device = next(model.parameters()).device
    pairs = [encode_for_training(tokenizer, e, max_length) for e in examples]
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][0]))  # similar lengths batch together
    out: list[tuple[float, int]] = [(0.0, 0)] * len(pairs)
    for start in tqdm(range(0, len(order), batch_size), desc=desc, unit="batch", leave=False):
        idx = order[start : start + batch_size]
        batch = collate([pairs[i] for i in idx], tokenizer.pad_token_id, device)
        labels = batch["labels"]  # (B, T), -100 on prompt and padding
        first = int((labels != -100).int().argmax(dim=1).min())  # the batch's first answer token
        keep = torch.arange(max(first - 1, 0), labels.shape[1] - 1, device=device)  # positions that predict an answer token
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], logits_to_keep=keep).logits  # (B, K, V)
        targets = labels[:, keep + 1]  # (B, K)
        nll = torch.nn.functional.cross_entropy(logits.float().transpose(1, 2), targets, ignore_index=-100, reduction="none")  # (B, K)
        sums, counts = nll.sum(-1).tolist(), (targets != -100).sum(-1).tolist()  # sync point, once per batch
        for row, i in enumerate(idx):
            out[i] = (sums[row], counts[row])
    return out


def mean_loss(items: list[tuple[float, int]]) -> float:
    """Mean NLL per answer token over items' (summed NLL, answer tokens)."""
    return sum(t for t, _ in items) / max(sum(n for _, n in items), 1)


def heldout_loss(model, tokenizer, examples: list[Example], max_length: int = 384, batch_size: int = 8, desc: str = "loss") -> float:
    """Mean NLL per reference-answer token (teacher forced), over all of `examples`."""
    return mean_loss(item_losses(model, tokenizer, examples, max_length, batch_size, desc))
