#!/usr/bin/env bash
# SmartFed (every router kind, with and without EEQA) against FedIT, FFA-LoRA, LoRAHub, a module
# router and local training on the zh+math composition, then the report (table, ratios vs FedIT, plots).
#
#   experiments/zh+math.sh [--quick] [--methods a,b] [--fractions 0.1,0.25,1] [--set section.key=value ...]
#
# Results: runs/zh+math/ (one run folder per method) and runs/zh+math/report/report.md.
# Running time on 2 CPU cores: 89 min 44 s for the 11 runs of an earlier
# method list (now 13 runs with the tuned defaults, not timed yet) (measured, `time experiments/zh+math.sh`;
# the machine was partly shared with other jobs).
# --quick: the CI smoke scale (2 rounds, 4 clients, 1 step, 2 items per suite), meant for the tiny
# test model and pool (tests/test_baselines.py passes them with --set model.name=... --set pool.adapters=[...]).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
smartfed="$repo/.venv/bin/smartfed"  # the README's set-up; else whatever `smartfed` is on PATH
[[ -x "$smartfed" ]] || smartfed=smartfed
exec "$smartfed" compare "zh+math" --out "runs/zh+math" "$@"
