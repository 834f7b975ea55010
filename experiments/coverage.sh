#!/usr/bin/env bash
# The coverage study: what reuse can do when the pool matches the task and when it does not. For each
# composition, the reuse methods (SmartFed's defaults, the module router, Arrow) run on two more pools
# beside the default one (the composition scripts' runs):
#
#   matched     zh+math: zh + math-eqn (GSM8K questions in English answered in Ape210K's 列式/答案是 format)
#               math+code: math-pal (GSM8K-PAL's own train split) + code;  zh+code: zh + code
#   mismatched  zh+math: code + instruct;  math+code: zh + instruct;  zh+code: math + instruct
#
#   experiments/coverage.sh [COMPOSITION ...] [-- --seeds 0,1,2 --set section.key=value ...]
#
# The matched modules are built first if missing (`smartfed pool build`, the default pool's settings)
# into $SMARTFED_CACHE/pools/smollm2-135m-instruct-coverage/; the others are the shipped default modules.
# Every method runs at the rate tuned for it on the composition's dev split where docs/tuning/<composition>
# has one (else its default). Results: docs/results/<composition>-pool-<matched|mismatched>/, a report in each.
# Running time on 2 CPU cores: see README ("The coverage study"); each run is resumable.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
smartfed="$repo/.venv/bin/smartfed"; python="$repo/.venv/bin/python"
[[ -x "$smartfed" ]] || { smartfed=smartfed; python=python; }
compositions=(); while [[ $# -gt 0 && "$1" != -- ]]; do compositions+=("$1"); shift; done
[[ $# -gt 0 ]] && shift  # the rest goes to smartfed compare
[[ ${#compositions[@]} -gt 0 ]] || compositions=(zh+math math+code zh+code)
shipped="$("$python" -c 'from smartfed.pool.resolve import shipped_pool_dir; print(shipped_pool_dir("smollm2-135m-instruct"))')"
coverage="${SMARTFED_CACHE:-$HOME/.cache/smartfed}/pools/smollm2-135m-instruct-coverage"
declare -A matched=([zh+math]="$shipped/zh $coverage/math-eqn" [math+code]="$coverage/math-pal $shipped/code" [zh+code]="$shipped/zh $shipped/code")
declare -A mismatched=([zh+math]="$shipped/code $shipped/instruct" [math+code]="$shipped/zh $shipped/instruct" [zh+code]="$shipped/math $shipped/instruct")
for composition in "${compositions[@]}"; do
  tuning=(); [[ -f "$repo/docs/tuning/$composition/tuning.json" ]] && tuning=(--tuning "$repo/docs/tuning/$composition")
  for pool in matched mismatched; do
    declare -n folders="$pool"
    list=""
    for folder in ${folders[$composition]}; do
      skill="$(basename "$folder")"
      [[ -f "$folder/adapter_config.json" ]] || "$smartfed" pool build --skill "$skill" --out "$folder"
      list+="${list:+,}\"$folder\""
    done
    "$smartfed" compare "$composition" --out "docs/results/$composition-pool-$pool" --methods smartfed,module-router,arrow \
      "${tuning[@]}" --set "pool.adapters=[$list]" "$@"
  done
done
