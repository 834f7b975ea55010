"""Train-step time and peak memory, side by side in one run, on the default SmolLM2-135M.

Variants (batch 4 x 256 tokens, the same random tokens for all):
  bare            the frozen model's forward + backward, gradients w.r.t. the input embeddings
  lora-r8         a PEFT LoRA r=8 train step on the same seven linear types
  smartfed-KIND   routed experts (pool of 4 modules of rank 8, M_j = 32, top-2), each router kind
  naive-loop      the same routed layer written as a Python loop over the 32 experts (linear router)

FLOPs: the matmuls of one train step (torch's FlopCounterMode over the first warm-up step), the floor a
variant's time ratio can reach when every matmul runs as efficiently as the bare model's. Time: all
variants in one process, interleaved over rounds; median and fastest step (the machine is
shared, so the fastest step is the best estimate of the intrinsic cost, the median of what a user sees). Memory: each variant in a
fresh process; peak RSS during the steps (VmHWM, reset after set-up) minus RSS before them. glibc's
dynamic mmap threshold otherwise keeps freed activation buffers in a fragmented heap (the naive loop
then reaches 24 GB RSS for 2.4 GB of live data), so the bench pins MALLOC_MMAP_THRESHOLD_ for every
variant alike and RSS measures live memory. The naive loop is ~20x slower: it runs 1 timed step a round.

    python bench/train_step.py            # about 20-25 min on 2 CPU cores (a 5-variant run took 12.6 min)
    python bench/train_step.py --device cuda --dtype bfloat16   # a GPU: peak GPU memory instead of RSS
    python bench/train_step.py --device cuda --dtype 4bit       # SmartFed on a 4-bit base against QLoRA (smartfed[gpu])
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from peft import LoraConfig, get_peft_model
from torch.utils.flop_counter import FlopCounterMode

from smartfed import ExpertPool, attach_experts, detach_experts, router_parameters
from smartfed.experts import RoutedLinear, routed_layers
from smartfed.models.families import LLAMA_LINEAR_TYPES
from smartfed.models import cache_dir, load_base_model
from smartfed.routers import ROUTER_KINDS, topk_softmax

BATCH, SEQ, RANK, MODULES, TOP_K = 4, 256, 8, 4, 2
MMAP_THRESHOLD = "65536"
VARIANTS = ("bare", "lora-r8", *(f"smartfed-{k}" for k in ROUTER_KINDS if k != "module-arrow"), "naive-loop")  # module-arrow trains nothing
PLACE = {"device": "cpu", "dtype": "float32"}  # --device, --dtype


def random_adapters(model) -> list[Path]:
    """Four PEFT LoRA modules of rank 8 on all seven linear types, randomly initialised (timing only)."""
    folders = [cache_dir() / "bench" / f"random-r{RANK}-{n}" for n in range(MODULES)]
    for n, folder in enumerate(folders):
        if not (folder / "adapter_model.safetensors").is_file():
            torch.manual_seed(n)
            peft_model = get_peft_model(model, LoraConfig(r=RANK, lora_alpha=2 * RANK, target_modules=list(LLAMA_LINEAR_TYPES), init_lora_weights=False))
            peft_model.save_pretrained(folder)
            peft_model.unload()
    return folders


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


def load():
    model, _ = load_base_model(dtype=PLACE["dtype"], device=PLACE["device"])
    model.train()
    pool = ExpertPool.from_adapters(random_adapters(model), model)
    ids = torch.randint(0, model.config.vocab_size, (BATCH, SEQ), generator=torch.Generator().manual_seed(0))
    return model, pool, ids.to(model.device)


def _sync(model) -> None:
    if model.device.type == "cuda":
        torch.cuda.synchronize()  # a sync point, for timing only


def time_variants(variants: list[str], rounds: int, steps: int) -> tuple[dict[str, list[float]], dict[str, int]]:
    """Seconds per step for each variant, and the matmul FLOPs of one step (counted in the first warm-up)."""
    model, pool, ids = load()
    times: dict[str, list[float]] = {v: [] for v in variants}
    flops: dict[str, int] = {}
    for r in range(rounds):
        for variant in variants:
            m, params, teardown = setup(variant, model, pool)
            optimizer = torch.optim.AdamW(params, lr=1e-3) if params else None
            if r == 0:  # the first warm-up (untimed) also counts the step's FLOPs
                with FlopCounterMode(display=False) as counter:
                    train_step(m, params, optimizer, ids)
                flops[variant] = counter.get_total_flops()
            else:
                train_step(m, params, optimizer, ids)  # warm-up
            for _ in range(1 if variant == "naive-loop" else steps):
                _sync(model)
                start = time.perf_counter()
                train_step(m, params, optimizer, ids)
                _sync(model)
                times[variant].append(time.perf_counter() - start)
            teardown()
            print(f"round {r + 1}/{rounds} {variant:20s} {statistics.median(times[variant][-steps:]):.3f} s/step", file=sys.stderr)
    return times, flops


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_of(variant: str, steps: int) -> None:
    """Run in a fresh process: print the peak RSS the train steps add, in MB, as JSON."""
    model, pool, ids = load()
    m, params, _ = setup(variant, model, pool)
    optimizer = torch.optim.AdamW(params, lr=1e-3) if params else None
    if model.device.type == "cuda":  # peak GPU memory the steps add
        before = torch.cuda.memory_allocated()
        torch.cuda.reset_peak_memory_stats()
        for _ in range(steps):
            train_step(m, params, optimizer, ids)
        print(json.dumps({"variant": variant, "peak_mb": (torch.cuda.max_memory_allocated() - before) / 2**20}))
        return
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
    parser.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | mps (GPU memory: peak allocated by the steps)")
    parser.add_argument("--dtype", default="float32", help="float32 | bfloat16 | float16 | 4bit | 8bit (the base model's; "
                                                           "4bit loads it through bitsandbytes as QLoRA does, so lora-r8 is a QLoRA step)")
    args = parser.parse_args()
    PLACE.update(device=args.device, dtype=args.dtype)
    if os.environ.get("MALLOC_MMAP_THRESHOLD_") != MMAP_THRESHOLD:  # must be set before the process starts
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "MALLOC_MMAP_THRESHOLD_": MMAP_THRESHOLD})
    if args.memory_of:
        return memory_of(args.memory_of, 2)

    variants = [v for v in VARIANTS if v in {"bare", "lora-r8", *args.variants.split(",")}]
    unknown = set(args.variants.split(",")) - set(VARIANTS)
    if unknown:
        parser.error(f"--variants: expected some of {', '.join(VARIANTS)}, found {', '.join(sorted(unknown))}")
    load()  # build and cache the random adapters once, before any timing
    peaks = {}
    for variant in variants:
        out = subprocess.run([sys.executable, __file__, "--memory-of", variant, "--device", args.device, "--dtype", args.dtype],
                             check=True, capture_output=True, text=True, env=os.environ)
        peaks[variant] = json.loads(out.stdout.strip().splitlines()[-1])["peak_mb"]
        print(f"memory {variant:20s} {peaks[variant]:.0f} MB", file=sys.stderr)
    samples, flops = time_variants(variants, args.rounds, args.steps)
    times = {v: statistics.median(t) for v, t in samples.items()}
    fastest = {v: min(t) for v, t in samples.items()}

    print(f"Train step, SmolLM2-135M {args.dtype} on {args.device}, batch {BATCH} x {SEQ} tokens, pool {MODULES} x r{RANK} on 7 linear types "
          f"(M_j={MODULES * RANK}, top-{TOP_K}), torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"{args.rounds} rounds x {args.steps} steps, interleaved\n")
    print("| variant | median s/step | vs bare | vs LoRA r8 | fastest s/step | vs bare | vs LoRA r8 | peak step memory (MB) | vs LoRA r8 "
          "| matmul GFLOP/step | vs bare |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for v in variants:
        print(f"| {v} | {times[v]:.2f} | {times[v] / times['bare']:.2f}x | {times[v] / times['lora-r8']:.2f}x "
              f"| {fastest[v]:.2f} | {fastest[v] / fastest['bare']:.2f}x | {fastest[v] / fastest['lora-r8']:.2f}x "
              f"| {peaks[v]:.0f} | {peaks[v] / peaks['lora-r8']:.2f}x | {flops[v] / 1e9:.0f} | {flops[v] / flops['bare']:.2f}x |")


if __name__ == "__main__":
    main()
