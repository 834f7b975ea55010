#!/usr/bin/env bash
# The reuse methods' learning rate beyond the tuning grid's edge, on the shipped pool. docs/tuning/zh+math and
# docs/tuning/math+code chose 0.1 for SmartFed and the module router: the edge trial one step beyond the grid, on
# the 60-step pool of that time. This reruns 0.03, 0.1 and one step further (0.3) for both, at the tuning scale
# (tuning.json "scale": 3 rounds of 3 clients x 2 steps, dev loss on 32 items), over the shipped pool, with
# SmartFed's defaults for the rest (scaled gate, linear router, Arrow start).
#
#   experiments/lr-edge.sh [COMPOSITION]   # zh+math unless named; about 4 minutes a trial on one core; finished
#                                          # trials are kept
#
# Results: docs/tuning/<composition>-lr-edge/<trial>/ (summary.json: dev_loss before and after).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
smartfed="$repo/.venv/bin/smartfed"; python="$repo/.venv/bin/python"
[[ -x "$smartfed" ]] || { smartfed=smartfed; python=python3; }
composition="${1:-zh+math}"
out="$repo/docs/tuning/$composition-lr-edge"
# the tuning scale itself (smartfed.tune.SCALE), as --set options
mapfile -t scale < <("$python" -c 'from smartfed.tune import SCALE
for key, value in SCALE.items(): print("--set"); print(f"{key}={value}")')
scale+=(--set "data.composition=$composition" --set "run.out_dir=$out")
for method in smartfed module-router; do
  for lr in 0.03 0.1 0.3; do
    name="lr-$method-$lr"
    [[ -f "$out/$name/summary.json" ]] && { echo "$name: finished earlier, kept"; continue; }
    rm -rf "${out:?}/$name"  # a trial stopped mid-way starts again (3 rounds)
    "$smartfed" run "${scale[@]}" --set "run.name=$name" --set "run.method=$method" --set "training.lr=$lr"
  done
done
"$python" - "$out" <<'PY'
import json, sys
from pathlib import Path
for summary in sorted(Path(sys.argv[1]).glob("*/summary.json")):
    s = json.loads(summary.read_text())
    print(f"{summary.parent.name}: dev loss {s['initial_heldout_loss']:.4f} -> {s['final_heldout_loss']:.4f}")
PY
