#!/usr/bin/env bash
# The reuse methods' learning rate beyond the tuning grid's edge, on the shipped pool. docs/tuning/zh+math and
# docs/tuning/math+code chose 0.1 for SmartFed and the module router: the edge trial one step beyond the grid, on
# the 60-step pool of that time. This reruns 0.03, 0.1 and one step further (0.3) for both, at the tuning scale
# (tuning.json "scale": 3 rounds of 3 clients x 2 steps, dev loss on 32 items), over the shipped pool, with
# SmartFed's defaults for the rest (scaled gate, linear router, Arrow start).
#
#   experiments/lr-edge.sh [COMPOSITION]   # zh+math unless named; about 4 minutes a trial on one core; finished
#                                          # trials are kept, a stopped one resumes
#
# Results: docs/tuning/<composition>-lr-edge/<trial>/ (summary.json: dev_loss before and after).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
python="$repo/.venv/bin/python"; [[ -x "$python" ]] || python=python3
composition="${1:-zh+math}"
out="$repo/docs/tuning/$composition-lr-edge"
# at the tuning scale itself (smartfed.tune.SCALE); compare's runner keeps a finished trial only where its config is
# the one asked for (else it names the difference), and resumes a stopped one
"$python" - "$composition" "$out" <<'PY'
import sys
from smartfed.compare import run_comparison
from smartfed.config import load_config
from smartfed.tune import SCALE
composition, out = sys.argv[1:]
run_comparison([load_config(base={**SCALE, "data.composition": composition, "run.out_dir": out, "run.name": f"lr-{method}-{lr}",
                                  "run.method": method, "training.lr": lr})
                for method in ("smartfed", "module-router") for lr in (0.03, 0.1, 0.3)], skip_busy=False)
PY
"$python" - "$out" <<'PY'
import json, sys
from pathlib import Path
for summary in sorted(Path(sys.argv[1]).glob("*/summary.json")):
    s = json.loads(summary.read_text())
    print(f"{summary.parent.name}: dev loss {s['initial_heldout_loss']:.4f} -> {s['final_heldout_loss']:.4f}")
PY
