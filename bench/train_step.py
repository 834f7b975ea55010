"""Train-step time and peak memory, side by side in one run, on the default SmolLM2-135M.

Variants (batch 4 x 256 tokens, the same random tokens for all):
  bare            the frozen model's forward + backward, gradients w.r.t. the input embeddings
  lora-r8         a PEFT LoRA r=8 train step on the same seven linear types
  smartfed-KIND   routed experts (pool of 4 modules of rank 8, M_j = 32, top-2), each router kind
  naive-loop      the same routed layer written as a Python loop over the 32 experts (linear router)

FLOPs: the matmuls of one train step (torch's FlopCounterMode over the first warm-up step), the floor a
variant's time ratio can reach when every matmul runs as efficiently as the bare model's. Time: all
variants in one process, interleaved over rounds; median and fastest step (the machine is
shared, so the fastest step is the best estimate of the intrinsic cost, the median of what a user sees). Memory on CPU: each variant in a
fresh process; peak RSS during the steps (VmHWM, reset after set-up) minus RSS before them. glibc's
dynamic mmap threshold otherwise keeps freed activation buffers in a fragmented heap (the naive loop
then reaches 24 GB RSS for 2.4 GB of live data), so the bench pins MALLOC_MMAP_THRESHOLD_ for every
variant alike and RSS measures live memory. On a GPU: the peak the allocator counts during the first
round's steps, less what was allocated before them (exact in one process). The naive loop is ~20x slower: it runs 1 timed step a round.

    python bench/train_step.py            # about 20-25 min on 2 CPU cores (a 5-variant run took 12.6 min)
    python bench/train_step.py --device cuda --dtype bfloat16   # a GPU: peak GPU memory instead of RSS
    python bench/train_step.py --device cuda --dtype 4bit       # SmartFed on a 4-bit base against QLoRA (smartfed[gpu])
    python bench/train_step.py --model shape:qwen2-7b --device cuda --dtype bfloat16 --variants smartfed-linear

`--model shape:NAME` (smollm2-135m, qwen2-7b, llama2-7b) builds the model from its published shapes with random
weights, on the device: a step's time and memory depend on shapes only, so a machine without the weights (or
without room for them) measures the same step. A 4-bit shape model is saved once in bf16, then loaded quantised.
"""

import argparse
import gc
import json
import tempfile
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoModelForCausalLM

from smartfed import ExpertPool, attach_experts, detach_experts, router_parameters
from smartfed.experts import RoutedLinear, routed_layers
from smartfed.models.families import LLAMA_LINEAR_TYPES
from smartfed.metrics.sizes import SHAPES
from smartfed.io import replace_folder
from smartfed.models import DTYPES, QUANTIZED, cache_dir, load_base_model, load_quantized, resolve_device
from smartfed.routers import ROUTER_KINDS, topk_softmax

BATCH, SEQ, RANK, MODULES, TOP_K = 4, 256, 8, 4, 2
MMAP_THRESHOLD = "65536"
VARIANTS = ("bare", "lora-r8", *(f"smartfed-{k}" for k in ROUTER_KINDS if k != "module-arrow"), "naive-loop")  # module-arrow trains nothing
PLACE = {"model": "smollm2-135m-instruct", "device": "cpu", "dtype": "float32"}  # --model, --device, --dtype


def random_adapters(model) -> list[Path]:
    """Four PEFT LoRA modules of rank 8 on all seven linear types, randomly initialised (timing only)."""
    tag = "" if PLACE["model"] == "smollm2-135m-instruct" else PLACE["model"].replace(":", "-").replace("/", "-") + "-"
    folders = [cache_dir() / "bench" / f"random-{tag}r{RANK}-{n}" for n in range(MODULES)]
    for n, folder in enumerate(folders):
        if not folder.is_dir():
            torch.manual_seed(n)
            peft_model = get_peft_model(model, LoraConfig(r=RANK, lora_alpha=2 * RANK, target_modules=list(LLAMA_LINEAR_TYPES), init_lora_weights=False))
            save_whole(peft_model, folder)
            peft_model.unload()
    return folders


def save_whole(model, folder: Path) -> None:
    """`model.save_pretrained(folder)`, the folder whole or not at all (a run stopped while saving leaves none)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent)
    model.save_pretrained(tmp)
    replace_folder(tmp, folder)


class NaiveLoopLinear(RoutedLinear):
    """The same layer with a Python loop over experts: what vectorising saves."""

    def forward(self, x):
        y = self.base_layer(x)
        gate = topk_softmax(self.router.logits(x.float(), None), self.top_k).to(x.dtype)  # (..., M)
        for i in range(self.num_experts):
            y = y + gate[..., i : i + 1] * (x @ self.A[i]).unsqueeze(-1) * self.scaled_B[:, i]
        return y


def setup(variant: str, model, pool):
    """Prepare `model` for `variant`; return (model to call, trainable params, teardown)."""
    if variant == "bare":
        return model, [], lambda: None
    if variant == "lora-r8":
        torch.manual_seed(0)
        peft_model = get_peft_model(model, LoraConfig(r=RANK, lora_alpha=2 * RANK, target_modules=list(LLAMA_LINEAR_TYPES)))
        return peft_model, [p for p in peft_model.parameters() if p.requires_grad], peft_model.unload
    kind = "linear" if variant == "naive-loop" else variant.removeprefix("smartfed-")
    attach_experts(model, pool, router=kind, top_k=TOP_K)
    if variant == "naive-loop":
        for layer in routed_layers(model).values():
            layer.__class__ = NaiveLoopLinear
    return model, router_parameters(model), lambda: detach_experts(model)


def train_step(model, params, optimizer, ids) -> None:
    if params:
        model(input_ids=ids, labels=ids).loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    else:  # bare: nothing trains, so take gradients w.r.t. the input embeddings
        embeds = model.get_input_embeddings()(ids).detach().requires_grad_(True)
        model(inputs_embeds=embeds, labels=ids).loss.backward()


def shape_model(name: str, dtype: str, device: str):
    """A model with `name`'s published shapes and random weights (seeded), frozen, built on `device`."""
    if name not in SHAPES:
        raise SystemExit(f"--model shape:{name}: expected one of {', '.join(SHAPES)}")
    torch.manual_seed(0)
    if dtype in QUANTIZED:  # bitsandbytes quantises while loading: save the random bf16 weights once
        folder = cache_dir() / "bench" / f"shape-{name}"
        if not folder.is_dir():
            with torch.device(resolve_device(device)):
                save_whole(AutoModelForCausalLM.from_config(SHAPES[name], dtype=torch.bfloat16), folder)
        model = load_quantized(str(folder), dtype, resolve_device(device))
    else:
        with torch.device(resolve_device(device)):
            model = AutoModelForCausalLM.from_config(SHAPES[name], dtype=DTYPES[dtype])
    return model.requires_grad_(False)


def load():
    if PLACE["model"].startswith("shape:"):
        model = shape_model(PLACE["model"].removeprefix("shape:"), PLACE["dtype"], PLACE["device"])
    else:
        model, _ = load_base_model(PLACE["model"], dtype=PLACE["dtype"], device=PLACE["device"])
    model.train()
    pool = ExpertPool.from_adapters(random_adapters(model), model)
    ids = torch.randint(0, model.config.vocab_size, (BATCH, SEQ), generator=torch.Generator().manual_seed(0))
    return model, pool, ids.to(model.device)


def _sync(model) -> None:
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)  # a sync point, for timing only


def count_flops(m, params, optimizer, ids) -> int | None:
    """Run one train step and return its matmul FLOPs; None where torch cannot count them (its counter
    rejects grouped-query attention's shapes in CUDA's SDPA, as SmolLM2's 9 query and 3 KV heads)."""
    try:
        with FlopCounterMode(display=False) as counter:
            train_step(m, params, optimizer, ids)
        return counter.get_total_flops()
    except AssertionError as err:  # raised at the first attention, before any backward: nothing to undo
        print(f"FLOPs not counted: {err}", file=sys.stderr)
    train_step(m, params, optimizer, ids)  # outside the handler, which would keep the failed graph alive
    return None


def time_variants(variants: list[str], rounds: int, steps: int) -> tuple[dict[str, list[float]], dict[str, int | None], dict[str, float]]:
    """Seconds per step for each variant, the matmul FLOPs of one step (counted in the first warm-up), and on a
    GPU the peak memory the first round's steps add (MB; the allocator's own count, so exact in one process)."""
    model, pool, ids = load()
    cuda = model.device.type == "cuda"
    if cuda:  # one untimed step first, so that no variant's peak holds the one-time buffers (cuBLAS workspaces)
        train_step(model, [], None, ids)
    times: dict[str, list[float]] = {v: [] for v in variants}
    flops: dict[str, int | None] = {}
    peaks: dict[str, float] = {}
    for r in range(rounds):
        for variant in variants:
            m, params, teardown = setup(variant, model, pool)
            optimizer = torch.optim.AdamW(params, lr=1e-3) if params else None
            if r == 0:  # the first warm-up (untimed) also counts the step's FLOPs
                if cuda:
                    gc.collect()  # the last variant's graph, if a reference cycle holds it
                    torch.cuda.synchronize(model.device)
                    before = torch.cuda.memory_allocated(model.device)
                    torch.cuda.reset_peak_memory_stats(model.device)
                flops[variant] = count_flops(m, params, optimizer, ids)
            else:
                train_step(m, params, optimizer, ids)  # warm-up
            for _ in range(1 if variant == "naive-loop" else steps):
                _sync(model)
                start = time.perf_counter()
                train_step(m, params, optimizer, ids)
                _sync(model)
                times[variant].append(time.perf_counter() - start)
            if r == 0 and cuda:
                peaks[variant] = (torch.cuda.max_memory_allocated(model.device) - before) / 2**20
            del optimizer
            teardown()
            print(f"round {r + 1}/{rounds} {variant:20s} {statistics.median(times[variant][-steps:]):.3f} s/step", file=sys.stderr)
    return times, flops, peaks


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_of(variant: str, steps: int) -> None:
    """Run in a fresh process: print the peak RSS the train steps add, in MB, as JSON (CPU only)."""
    model, pool, ids = load()
    m, params, _ = setup(variant, model, pool)
    optimizer = torch.optim.AdamW(params, lr=1e-3) if params else None
    before = _status_kb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # reset the peak (VmHWM) to the current RSS
    for _ in range(steps):
        train_step(m, params, optimizer, ids)
    print(json.dumps({"variant": variant, "peak_mb": (_status_kb("VmHWM") - before) / 1024}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated (bare and lora-r8 always run: the ratios' bases)")
    parser.add_argument("--memory-of", choices=VARIANTS, help=argparse.SUPPRESS)
    parser.add_argument("--model", default=PLACE["model"], help="a base model (smartfed's model.name) or shape:NAME, random weights "
                                                                 f"with NAME's shapes ({', '.join(SHAPES)})")
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | mps (GPU memory: peak allocated by the steps)")
    parser.add_argument("--dtype", default="float32", help="float32 | bfloat16 | float16 | 4bit | 8bit (the base model's; "
                                                           "4bit loads it through bitsandbytes as QLoRA does, so lora-r8 is a QLoRA step)")
    args = parser.parse_args()
    PLACE.update(model=args.model, device=args.device, dtype=args.dtype)
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") != MMAP_THRESHOLD:  # must be set before the process starts
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "MALLOC_MMAP_THRESHOLD_": MMAP_THRESHOLD})
    if args.memory_of:
        if resolve_device(args.device).type != "cpu":
            parser.error("--memory-of measures RSS: CPU only (a GPU's peak is measured in the timing process)")
        return memory_of(args.memory_of, 2)

    variants = [v for v in VARIANTS if v in {"bare", "lora-r8", *args.variants.split(",")}]
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        parser.error(f"--variants: expected some of {', '.join(VARIANTS)}, found {', '.join(sorted(unknown))}")
    cuda = resolve_device(args.device).type == "cuda"
    peaks = {}
    for variant in [] if cuda else variants:  # RSS: each variant in a fresh process (a GPU's allocator counts exactly in one)
        if not peaks:
            load()  # build and cache the random adapters once, before any timing
        out = subprocess.run([sys.executable, __file__, "--memory-of", variant, "--model", args.model, "--device", args.device,
                              "--dtype", args.dtype],
                             check=True, capture_output=True, text=True, env=os.environ)
        peaks[variant] = json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]
        print(f"memory {variant:20s} {peaks[variant]:.0f} MB", file=sys.stderr)
    samples, flops, gpu_peaks = time_variants(variants, args.rounds, args.steps)
    peaks |= gpu_peaks
    times = {v: statistics.median(t) for v, t in samples.items()}
    fastest = {v: min(t) for v, t in samples.items()}

    device = torch.cuda.get_device_name(resolve_device(args.device)) if cuda else args.device
    print(f"Train step, {args.model} {args.dtype} on {device}, batch {BATCH} x {SEQ} tokens, pool {MODULES} x r{RANK} on 7 linear types "
          f"(M_j={MODULES * RANK}, top-{TOP_K}), torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{args.rounds} rounds x {args.steps} steps, interleaved\n")
    print("| variant | median s/step | vs bare | vs LoRA r8 | fastest s/step | vs bare | vs LoRA r8 | peak step memory (MB) | vs LoRA r8 "
          "| matmul GFLOP/step | vs bare |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    def seconds(x: float) -> str:
        return f"{x:.2f}" if x >= 1 else f"{x:.4f}"

    for v in variants:
        counted = flops[v] is not None and flops["bare"] is not None
        print(f"| {v} | {seconds(times[v])} | {times[v] / times['bare']:.2f}x | {times[v] / times['lora-r8']:.2f}x "
              f"| {seconds(fastest[v])} | {fastest[v] / fastest['bare']:.2f}x | {fastest[v] / fastest['lora-r8']:.2f}x "
              f"| {peaks[v]:.0f} | {peaks[v] / peaks['lora-r8']:.2f}x "
              + (f"| {flops[v] / 1e9:.0f} | {flops[v] / flops['bare']:.2f}x |" if counted else "| - | - |"))


if __name__ == "__main__":
    main()
