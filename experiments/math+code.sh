#!/usr/bin/env bash
# SmartFed (every router kind, with and without EEQA) against FedIT, FFA-LoRA, LoRAHub, a module
# router and local training on the math+code composition, then the report (table, ratios vs FedIT, plots).
#
#   experiments/math+code.sh [--quick] [--methods a,b] [--fractions 0.1,0.25,1] [--set section.key=value ...]
#
# Results: runs/math+code/ (one run folder per method) and runs/math+code/report/report.md.
# Running time on 2 CPU cores: about 2 h 5 min for the 11 runs of an earlier
# method list (now 13 runs with the tuned defaults, not timed yet), measured with math+code.sh and
# zh+code.sh running side by side with one thread each (OMP_NUM_THREADS=1); LoRAHub (about 22 min)
# and local (about 18 min) are the long ones.
# --quick: the CI smoke scale (2 rounds, 4 clients, 1 step, 2 items per suite), meant for the tiny
# test model and pool (tests/test_baselines.py passes them with --set model.name=... --set pool.adapters=[...]).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
smartfed="$repo/.venv/bin/smartfed"  # the README's set-up; else whatever `smartfed` is on PATH
[[ -x "$smartfed" ]] || smartfed=smartfed
exec "$smartfed" compare "math+code" --out "runs/math+code" "$@"
