"""Train a PEFT LoRA module on one skill's public data, the way a community module is made.

The result is a normal PEFT adapter folder plus `smartfed_card.json` (base model, data, steps,
losses). Training is seeded and resumable: the batch of step s is a pure function of (seed, s), and
a checkpoint (adapter, optimizer, step, losses) is written atomically every `checkpoint_every`
steps, so a killed build restarts where it stopped with the same result.
"""

import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model, set_peft_model_state_dict
from peft.utils import get_peft_model_state_dict
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from smartfed.data import COMPOSITIONS, composition_splits
from smartfed.data.tokenize import collate, encode_for_training
from smartfed.errors import AdapterError
from smartfed.models.families import LLAMA_LINEAR_TYPES
from smartfed.models import DEFAULT_MODEL, load_base_model
from smartfed.pool.resolve import DEFAULT_SKILLS

CARD = "smartfed_card.json"


@dataclass(frozen=True)
class BuildConfig:
    skill: str  # a composition (smartfed.data): the module trains on its train split, never on its dev or held-out items
    out: str
    model: str = DEFAULT_MODEL
    rank: int = 8
    alpha: float = 16.0
    targets: tuple[str, ...] = LLAMA_LINEAR_TYPES
    steps: int = 150
    batch_size: int = 4
    max_length: int = 256
    lr: float = 1e-3
    warmup: int = 10
    seed: int = 0
    checkpoint_every: int = 25
    data_dir: str | None = field(default=None, compare=False)

    def __post_init__(self):
        if self.skill not in COMPOSITIONS:
            raise ValueError(f"skill expected one of {tuple(COMPOSITIONS)}, found {self.skill!r}")
        for key in ("rank", "steps", "batch_size", "max_length", "checkpoint_every"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} expected >= 1, found {getattr(self, key)}")


def _batch_indices(step: int, batch_size: int, n: int, seed: int) -> list[int]:
    """Indices of step `step`'s batch: epoch-wise permutations of range(n), a pure function of (seed, step)."""
    first = step * batch_size
    out = []
    for pos in range(first, first + batch_size):
        epoch, offset = divmod(pos, n)
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch))
        out.append(int(perm[offset]))
    return out


def _ids_sha256(examples: list) -> str:
    """sha256 of the examples' ids in order: which items, in which order, a module's steps drew from."""
    return hashlib.sha256("\n".join(e.id for e in examples).encode()).hexdigest()


def trained_examples(folder: Path, data_dir=None) -> list:
    """The examples a module built by `build_module` trained on, in order, rebuilt from its card (each step's batch is
    a pure function of seed and step): what a held-out set must not hold. An AdapterError where the card is missing
    or its training split is not the one found here (other data)."""
    try:
        card = json.loads((Path(folder) / CARD).read_text(encoding="utf-8"))
        skill, steps, size, seed = card["skill"], card["steps"], card["config"]["batch_size"], card["config"]["seed"]
        expected = card["data"]["train_examples"]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise AdapterError(f"module {folder}: expected {CARD} with skill, steps, config.batch_size, config.seed and "
                           f"data.train_examples, found {type(err).__name__}: {err}") from err
    train = composition_splits(skill, data_dir).train
    if len(train) != expected:
        raise AdapterError(f"module {folder}: its card says {expected} training examples of '{skill}', found {len(train)} here")
    ids = card["data"].get("train_ids_sha256")  # (cards written before it was recorded have only the count)
    if ids is not None and ids != _ids_sha256(train):
        raise AdapterError(f"module {folder}: its card's data.train_ids_sha256 is {ids}, found {_ids_sha256(train)} here: "
                           f"other training data of '{skill}'")
    return [train[i] for step in range(steps) for i in _batch_indices(step, size, len(train), seed)]


def _lr_factor(step: int, cfg: BuildConfig) -> float:
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    return 0.5 * (1 + math.cos(math.pi * (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)))


def build_module(cfg: BuildConfig) -> Path:
    """Train (or resume) one module and write its adapter folder to cfg.out; return that folder."""
    out = Path(cfg.out)
    if (out / CARD).is_file():
        return out  # already built
    torch.manual_seed(cfg.seed)
    model, tokenizer = load_base_model(cfg.model)
    train = composition_splits(cfg.skill, cfg.data_dir).train  # the held-out 10% and dev 5% are never trained on
    lora = LoraConfig(r=cfg.rank, lora_alpha=cfg.alpha, target_modules=list(cfg.targets), lora_dropout=0.05, task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, lora)
    peft_model.train()
    params = [p for p in peft_model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(s, cfg))

    checkpoints = out / "checkpoints"
    step, losses = 0, []
    done = sorted(checkpoints.glob("step-*")) if checkpoints.is_dir() else []
    if done:
        set_peft_model_state_dict(peft_model, load_file(done[-1] / "adapter.safetensors"))
        state = torch.load(done[-1] / "state.pt", weights_only=True)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, losses = state["step"], state["losses"]
        torch.set_rng_state(state["rng"])

    start = time.time()
    bar = tqdm(total=cfg.steps, initial=step, desc=f"pool build {cfg.skill}", unit="step")
    while step < cfg.steps:
        idx = _batch_indices(step, cfg.batch_size, len(train), cfg.seed)
        batch = collate([encode_for_training(tokenizer, train[i], cfg.max_length) for i in idx], tokenizer.pad_token_id)
        loss = peft_model(**batch).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())  # sync point, once per step
        step += 1
        bar.update(1)
        bar.set_postfix(loss=f"{sum(losses[-10:]) / len(losses[-10:]):.3f}")
        if step % cfg.checkpoint_every == 0 and step < cfg.steps:
            _save_checkpoint(checkpoints, peft_model, optimizer, scheduler, step, losses)
    bar.close()

    _write_module(out, cfg, peft_model, train, step, losses, time.time() - start)
    shutil.rmtree(checkpoints, ignore_errors=True)
    peft_model.unload()
    return out


def _write_module(out: Path, cfg: BuildConfig, peft_model, train: list, step: int, losses: list[float], seconds: float) -> None:
    """The adapter folder with its card, written whole: a temp folder, then every file renamed in (the card last)."""
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    peft_model.save_pretrained(tmp)
    # peft writes target_modules from a set, in the process's string-hash order: sorted, the same module is the same
    # bytes in every process, so its adapters_sha256 (a run's record of its pool) does not depend on PYTHONHASHSEED
    config_path = tmp / "adapter_config.json"
    adapter_config = json.loads(config_path.read_text(encoding="utf-8"))
    config_path.write_text(json.dumps(adapter_config | {"target_modules": sorted(adapter_config["target_modules"])}, indent=2, sort_keys=True))
    card = {
        "skill": cfg.skill,
        "base_model": cfg.model,
        "data": {"sources": sorted({e.source for e in train}), "train_examples": len(train), "train_ids_sha256": _ids_sha256(train),
                 "heldout_share": 0.1, "dev_share": 0.05},
        "config": asdict(cfg) | {"targets": list(cfg.targets), "out": None, "data_dir": None},
        "steps": step,
        "first_loss": sum(losses[:10]) / len(losses[:10]),
        "final_loss": sum(losses[-10:]) / len(losses[-10:]),
        "losses": losses,
        "seconds_this_run": round(seconds, 1),
        "torch_threads": torch.get_num_threads(),
    }
    (tmp / CARD).write_text(json.dumps(card, indent=1))
    (tmp / "README.md").write_text(
        f"# smartfed pool module: {cfg.skill}\n\nPEFT LoRA r={cfg.rank}, alpha={cfg.alpha} on {', '.join(cfg.targets)} of "
        f"{cfg.model}, trained {step} steps x {cfg.batch_size} examples on {', '.join(card['data']['sources'])} "
        f"({len(train)} examples). Loss {card['first_loss']:.3f} -> {card['final_loss']:.3f}. See {CARD}.\n"
    )
    out.mkdir(parents=True, exist_ok=True)
    for path in sorted(tmp.iterdir(), key=lambda p: p.name == CARD):  # the card lands last: it marks a finished module
        os.replace(path, out / path.name)
    shutil.rmtree(tmp)


def _save_checkpoint(folder: Path, peft_model, optimizer, scheduler, step: int, losses: list[float]) -> None:
    """Write checkpoints/step-NNNNNN as a whole (temp folder, then rename), then drop older ones."""
    tmp = folder / f".step-{step:06d}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.contiguous() for k, v in get_peft_model_state_dict(peft_model).items()}, tmp / "adapter.safetensors")
    torch.save({"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "step": step,
                "losses": losses, "rng": torch.get_rng_state()}, tmp / "state.pt")
    tmp.rename(folder / f"step-{step:06d}")
    for old in sorted(folder.glob("step-*"))[:-1]:
        shutil.rmtree(old)


def build_all(out_dir: str, **overrides) -> list[Path]:
    """The default pool: one module per skill in DEFAULT_SKILLS, under out_dir/<skill>."""
    return [build_module(BuildConfig(skill=s, out=str(Path(out_dir) / s), **overrides)) for s in DEFAULT_SKILLS]
