#!/usr/bin/env bash
# SmartFed (the defaults of `smartfed run`, and the same without EEQA) against FedIT, FFA-LoRA, the module
# router, LoRAHub and Arrow on the zh+code composition, 3 seeds each, every method at the learning rate tuned for
# it on the dev split where docs/tuning/zh+code has one; then the report (tables with 95% intervals, paired
# tests against FedIT, the paper's headline figures, plots with bands). The scale is compare.STANDARD.
#
#   experiments/zh+code.sh [--methods a,b] [--seeds 0,1,2] [--quick] [--no-report] [--set section.key=value ...]
#
# Results: docs/results/zh+code/ (one run folder per method and seed; checkpoints are not committed) and
# docs/results/zh+code/report/report.md. Resumable: finished runs are kept, a stopped one resumes at its
# last round. Running time on 2 CPU cores (the README's "Budget", measured per run): a run about 40-48 minutes of
# one core (at the tuned rates, seed 0: 20 rounds 1,313-1,733 s, scoring 1,018-1,553 s), LoRAHub about 56 (rounds
# 2,229 s, scoring 1,122 s), the whole sweep (19 runs) about 14 hours of one core, half that on two workers.
# --quick: the CI smoke scale (2 rounds, 4 clients, 1 step, 2 items per suite), meant for the tiny
# test model and pool (tests/test_baselines.py passes them with --set model.name=... --set pool.adapters=[...]).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
smartfed="$repo/.venv/bin/smartfed"  # the README's set-up; else whatever `smartfed` is on PATH
[[ -x "$smartfed" ]] || smartfed=smartfed
tuning=(); [[ -f "$repo/docs/tuning/zh+code/tuning.json" ]] && tuning=(--tuning "$repo/docs/tuning/zh+code")
exec "$smartfed" compare "zh+code" --out "$repo/docs/results/zh+code" --methods smartfed,smartfed-topk,fedit,ffa-lora,module-router,lorahub,arrow \
  --seeds 0,1,2 "${tuning[@]}" "$@"
