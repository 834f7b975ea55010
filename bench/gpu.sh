#!/usr/bin/env bash
# Everything a GPU session measures, in one short script (README, "Train step" under Benchmarks): the CUDA tests,
# the train-step bench in bf16 and 4-bit on SmolLM2-135M's shapes and in bf16 on Qwen2-7B's (random weights:
# step time and memory depend on shapes only), and the sparse path's crossover on the GPU. Each part has its
# own time limit, so one that fails or hangs costs only its share; outputs go to OUT (default bench/gpu-out),
# and the script exits 1 if any part failed.
#
#   bench/gpu.sh [OUT [PART...]]   # parts: tests bench-bf16 bench-4bit sparse-crossover bench-qwen2-7b-bf16 (default all);
#                                  # all of them about 6 minutes on one H100, most of it processes starting
set -uo pipefail
all=(tests bench-bf16 bench-4bit sparse-crossover bench-qwen2-7b-bf16)
out="${1:-bench/gpu-out}"; shift || true
parts=("${@:-${all[@]}}")
for p in "${parts[@]}"; do
  [[ " ${all[*]} " == *" $p "* ]] || { echo "bench/gpu.sh: part '$p': expected one of ${all[*]}" >&2; exit 2; }
done
mkdir -p "$out"
py="${PYTHON:-python3}"
failed=()
part() {  # NAME SECONDS COMMAND...: run COMMAND with a time limit, its output in OUT/NAME.txt
  local name=$1 seconds=$2; shift 2
  [[ " ${parts[*]} " == *" $name "* ]] || return 0
  echo "== $name ($(date -u +%T))"
  timeout -k 10 "$seconds" "$@" > "$out/$name.txt" 2>&1; local rc=$?
  echo "rc=$rc"; grep -v "Warning\|warnings.warn" "$out/$name.txt" | tail -n 25
  [[ $rc == 0 ]] || failed+=("$name (rc=$rc)")
}
{ nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  "$py" -c "import torch, transformers, peft; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'transformers', transformers.__version__, 'peft', peft.__version__)"
  "$py" -c "import bitsandbytes; print('bitsandbytes', bitsandbytes.__version__)" || echo "no bitsandbytes: the 4-bit part fails"
} 2>&1 | tee "$out/gpu.txt"
part tests 150 "$py" -m pytest -q -p no:cacheprovider tests/test_device_dtype.py
part bench-bf16 75 "$py" bench/train_step.py --model shape:smollm2-135m --device cuda --dtype bfloat16 --rounds 3 --steps 5 \
  --variants smartfed-linear,smartfed-activation
part bench-4bit 75 "$py" bench/train_step.py --model shape:smollm2-135m --device cuda --dtype 4bit --rounds 3 --steps 5 \
  --variants smartfed-linear,smartfed-activation
part sparse-crossover 45 "$py" bench/sparse_crossover.py --device cuda --dtype bfloat16 --d 3584
part bench-qwen2-7b-bf16 120 "$py" bench/train_step.py --model shape:qwen2-7b --device cuda --dtype bfloat16 --rounds 3 --steps 3 \
  --variants smartfed-linear,smartfed-activation
if (( ${#failed[@]} )); then echo "failed: ${failed[*]}"; exit 1; fi
