#!/usr/bin/env bash
# The paper's data-efficiency claim: SmartFed (the defaults of smartfed run) on 10% of every client's data
# against FedIT on all of it, 3 seeds, on one composition (default zh+math).
#
#   experiments/data-fraction.sh [COMPOSITION] [--seeds 0,1,2] [--quick] [--no-report] [--set section.key=value ...]
#
# The claim only means something if clients with all their data see more than 10% of it, so this sweep
# trains more than the comparison scripts: 20 rounds of 3 clients x 2 steps x 4 examples = 480 examples,
# more than 10% of zh+math's 4,226 training examples (423). Held-out loss decides (no benchmark suites:
# they would double the time). Results: docs/results/<composition>-data-fraction/ and its report-data-fraction/.
# Running time on 2 CPU cores (the README's "Budget", measured per run): a run's rounds 1,414-1,730 s of one core and
# its 200-item loss 100-260 s (no benchmark scoring): the 6 runs about 3 hours of one core.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
smartfed="$repo/.venv/bin/smartfed"  # the README's set-up; else whatever `smartfed` is on PATH
[[ -x "$smartfed" ]] || smartfed=smartfed
if [[ $# -gt 0 && "$1" != --* ]]; then composition="$1"; shift; else composition="zh+math"; fi
tuning=(); [[ -f "$repo/docs/tuning/$composition/tuning.json" ]] && tuning=(--tuning "$repo/docs/tuning/$composition")
exec "$smartfed" compare "$composition" --out "$repo/docs/results/$composition-data-fraction" --methods smartfed,fedit --fractions 0.1,1 \
  --seeds 0,1,2 "${tuning[@]}" --set federation.clients_per_round=3 --set training.local_steps=2 --set eval.score_examples=0 "$@"
