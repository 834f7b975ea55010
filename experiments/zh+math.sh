#!/usr/bin/env bash
# SmartFed (the defaults of `smartfed run`, and the same without EEQA) against FedIT, FFA-LoRA, the module
# router, LoRAHub and Arrow on the zh+math composition, 3 seeds each, every method at the learning rate tuned for
# it on the dev split where docs/tuning/zh+math has one; then the report (tables with 95% intervals, paired
# tests against FedIT, the paper's headline figures, plots with bands). The scale is compare.STANDARD.
#
#   experiments/zh+math.sh [--methods a,b] [--seeds 0,1,2] [--quick] [--no-report] [--set section.key=value ...]
#
# Results: docs/results/zh+math/ (one run folder per method and seed; checkpoints are not committed) and
# docs/results/zh+math/report/report.md. Resumable: finished runs are kept, a stopped one resumes at its
# last round. Running time on 2 CPU cores (the README's "Budget", measured per run): a run about 20-45 minutes of one
# core (20 rounds 777-1,179 s, the 200-item loss 100-260 s, MGSM-zh scoring 5-20 min; LoRAHub at 12 evaluations about
# an hour), the whole sweep (19 runs) about 11-12 hours of one core, half that on two workers.
# --quick: the CI smoke scale (2 rounds, 4 clients, 1 step, 2 items per suite), meant for the tiny
# test model and pool (tests/test_baselines.py passes them with --set model.name=... --set pool.adapters=[...]).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
smartfed="$repo/.venv/bin/smartfed"  # the README's set-up; else whatever `smartfed` is on PATH
[[ -x "$smartfed" ]] || smartfed=smartfed
tuning=(); [[ -f "$repo/docs/tuning/zh+math/tuning.json" ]] && tuning=(--tuning "$repo/docs/tuning/zh+math")
exec "$smartfed" compare "zh+math" --out "$repo/docs/results/zh+math" --methods smartfed,smartfed-topk,fedit,ffa-lora,module-router,lorahub,arrow \
  --seeds 0,1,2 "${tuning[@]}" "$@"
