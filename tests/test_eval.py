"""Scoring: code extraction and pass@1 on reference solutions, PAL answers, generation and loss."""


import pytest
import torch

from conftest import tiny_llama, tiny_tokenizer
from smartfed.data import Example, load_source
from smartfed.data.tokenize import collate, encode_for_training
from smartfed.eval.generate import generate, heldout_loss, item_losses
from smartfed.data.math_answers import answers_match
from smartfed.eval.sandbox import run_program
from smartfed.eval.suites import _code_program, _pal_answer, extract_code, program_given, run_suite


def test_extract_code():
    assert extract_code("Here:\n```python\ndef f():\n    return 1\n```\nDone") == "def f():\n    return 1\n"
    assert extract_code("```\nx = 1\n```\n```python\ndef g(): pass\n```") == "def g(): pass\n"
    assert extract_code("```python\ndef h():\n    return 2") == "def h():\n    return 2"  # cut off by the token limit
    assert extract_code("def raw(): pass") == "def raw(): pass"


@pytest.mark.parametrize("full, stops", [
    ("Here:\n```python\ndef f():\n    return 1\n```\nThis returns one. ```python\ndef g(): pass\n```", True),
    ("```\nx = 1\n```\nthen\n```py\ndef g(): pass\n```\nmore text", True),  # the block without a def does not stop it
    ("```\nx = 1\n```\nno function follows", False),
    ("def raw(): pass\n\nprint(raw())", False),  # unfenced: only the token limit ends it
    ("```python\ndef h():\n    return 2", False),  # never closed
])
def test_generation_stops_where_no_later_text_changes_the_extracted_program(full, stops):
    # the generator checks every prefix as tokens arrive: the first prefix that says stop must extract what the
    # whole completion extracts (character prefixes cover every token boundary)
    first = next((n for n in range(len(full) + 1) if program_given(full[:n])), None)
    assert (first is not None) is stops
    if stops:
        assert extract_code(full[:first]) == extract_code(full) and first < len(full)


@pytest.mark.parametrize("suite, stop", [("mbpp", "program_given"), ("gsm-hard-pal", "program_given"), ("mgsm-zh", "answer_given")])
def test_each_suite_stops_a_row_where_its_score_is_fixed(monkeypatch, suite, stop):
    import smartfed.eval.suites as suites

    given = []
    monkeypatch.setattr(suites, "generate", lambda model, tok, prompts, *a, stop_when=None, **k: given.append(stop_when) or [""] * len(prompts))
    run_suite(None, None, suite, limit=1)
    assert given[0].__name__ == stop


@pytest.mark.parametrize("source", ["humaneval", "mbpp-test"])
def test_reference_solutions_pass_and_wrong_ones_fail(source):
    examples = load_source(source)[:12]
    for e in examples:
        assert run_program(_code_program(e, e.target), timeout=10, require_marker=True).passed, e.id
    wrong = "```python\ndef nothing():\n    return None\n```"
    if source == "humaneval":  # only the body: the evaluator prepends the stub
        wrong = "```python\n    return None\n```"
    assert not any(run_program(_code_program(e, wrong), timeout=10, require_marker=True).passed for e in examples[:4])


def test_pal_answers_from_gsm_hard_reference_programs():
    examples = load_source("gsm-hard")[:10]
    correct = sum(answers_match(_pal_answer(f"```python\n{e.target}\n```"), e.answer) for e in examples)
    assert correct >= 9
    assert _pal_answer("```python\ndef solution():\n    while True: pass\n```") is None


@pytest.fixture
def tiny_with_tokenizer():
    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    return LlamaForCausalLM(config).eval(), tokenizer


def test_batched_generation_equals_one_at_a_time(tiny_with_tokenizer):
    model, tokenizer = tiny_with_tokenizer
    prompts = ["What is 2+3?", "Write a haiku about the sea, please, with care.", "你好"]
    batched = generate(model, tokenizer, prompts, max_new_tokens=8, batch_size=3)
    single = [generate(model, tokenizer, [p], max_new_tokens=8, batch_size=1)[0] for p in prompts]
    assert batched == single


def test_a_row_stops_once_its_completion_says_so_and_the_others_go_on(tiny_with_tokenizer):
    model, tokenizer = tiny_with_tokenizer
    prompts = ["What is 2+3?", "Write a haiku about the sea, please, with care.", "你好"]
    full = generate(model, tokenizer, prompts, max_new_tokens=12, batch_size=3)
    first = lambda text: text.startswith(full[0][:4])  # noqa: E731  only the first prompt's completion ever satisfies it
    stopped = generate(model, tokenizer, prompts, max_new_tokens=12, batch_size=3, stop_when=first)
    assert len(full[0]) > 4 and full[0].startswith(stopped[0]) and first(stopped[0]) and len(stopped[0]) < len(full[0])
    assert stopped[1:] == full[1:] or all(first(t) for t in stopped[1:])  # the other rows run on unless they satisfy it too


def test_a_token_cap_cuts_every_benchmark_answer_to_the_start_of_the_uncapped_one(tiny_with_tokenizer):
    model, tokenizer = tiny_with_tokenizer
    full = run_suite(model, tokenizer, "mgsm-zh", limit=2)
    capped = run_suite(model, tokenizer, "mgsm-zh", limit=2, max_new_tokens=6)
    for long, short in zip(full.items, capped.items):  # greedy: the capped answer is the uncapped one's first 6 tokens
        assert long["output"].startswith(short["output"]) and len(short["output"]) < len(long["output"])


def test_heldout_loss_is_the_mean_nll_of_answer_tokens(tiny_with_tokenizer):
    model, tokenizer = tiny_with_tokenizer
    examples = [Example(f"t/{i}", f"question {i}", f"answer number {i} " * (i + 1), "math", "en", "t") for i in range(3)]
    expected_sum, expected_count = 0.0, 0
    for e in examples:  # one at a time, no padding, by hand
        ids, labels = encode_for_training(tokenizer, e, 384)
        with torch.no_grad():
            logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0], dim=-1)
        for t in range(1, len(ids)):
            if labels[t] != -100:
                expected_sum -= logp[t - 1, labels[t]].item()
                expected_count += 1
    assert heldout_loss(model, tokenizer, examples, batch_size=2) == pytest.approx(expected_sum / expected_count, rel=1e-5)


def _by_hand(model, tokenizer, example):
    """(summed NLL, answer tokens) of one example alone: full logits, no padding."""
    ids, labels = encode_for_training(tokenizer, example, 384)
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), dim=-1)
    picked = [-logp[t - 1, labels[t]].item() for t in range(1, len(ids)) if labels[t] != -100]
    return sum(picked), len(picked)


@pytest.mark.parametrize("family", ["llama", "gemma2"])  # gemma2: the model's own head soft-caps its logits
def test_item_losses_batched_by_length_equal_each_item_alone(tiny_with_tokenizer, family):
    model, tokenizer = tiny_with_tokenizer
    if family == "gemma2":
        from transformers import Gemma2Config, Gemma2ForCausalLM

        torch.manual_seed(1)
        model = Gemma2ForCausalLM(Gemma2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                               num_attention_heads=4, num_key_value_heads=2, head_dim=8,
                                               final_logit_softcapping=2.0)).eval()
    # prompts and answers of mixed lengths, out of length order, so batches are re-ordered and padded
    examples = [Example(f"t/{i}", "question " * (7 - 2 * i) + str(i), "answer " * (1 + 3 * (i % 3)), "math", "en", "t") for i in range(5)]
    got = item_losses(model, tokenizer, examples, batch_size=2)
    for (total, count), e in zip(got, examples):
        want_total, want_count = _by_hand(model, tokenizer, e)
        assert count == want_count and total == pytest.approx(want_total, rel=1e-5)


def test_training_labels_mask_the_prompt():
    tokenizer = tiny_tokenizer()
    e = load_source("gsm8k-train")[0]
    ids, labels = encode_for_training(tokenizer, e, 512)
    answer = [t for t in labels if t != -100]
    assert tokenizer.decode(answer).startswith(e.target[:20]) and labels[0] == -100
    batch = collate([(ids, labels), (ids[:5], labels[:5])], tokenizer.pad_token_id)
    assert batch["attention_mask"][1].sum() == 5 and (batch["labels"][1, 5:] == -100).all()


def test_long_examples_keep_part_of_the_answer():
    tokenizer = tiny_tokenizer()
    e = Example("t/long", "word " * 400, "the answer " * 100, "zh", "en", "t")
    ids, labels = encode_for_training(tokenizer, e, 96)
    assert len(ids) == len(labels) == 96
    assert sum(t != -100 for t in labels) == 48 and labels[0] == -100
    assert tokenizer.decode(ids[:48]).rstrip().endswith("assistant")  # the prompt's end survives
