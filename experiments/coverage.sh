#!/usr/bin/env bash
# The coverage study: what reuse can do when the pool matches the task and when it does not. The reuse
# methods (SmartFed's defaults, the module router, Arrow), 3 seeds each, on one composition with one of two
# pools beside the default one (whose runs the composition scripts make):
#
#   matched     zh+math: zh + math-eqn (GSM8K questions in English answered in Ape210K's 列式/答案是 format)
#               math+code: math-pal (trained on GSM8K-PAL's train split, the clients' own source) + code
#               zh+code: zh + code (the default pool's own modules for the two skills)
#   mismatched  zh+math: code + instruct;  math+code: zh + instruct;  zh+code: math + instruct
#
#   experiments/coverage.sh COMPOSITION matched|mismatched [--methods a,b] [--seeds 0,1,2] [--no-report] [--set ...]
#
# A matched module that is not built yet is built first where a run asked for has not finished (`smartfed pool
# build`, the default pool's settings, about 25 min on 2 cores) into $SMARTFED_CACHE/pools/smollm2-135m-instruct-coverage/,
# one build at a time (flock); the other modules are the default pool's (shipped, else built). Every method runs at the rate tuned for it
# on the composition's dev split where docs/tuning/<composition> has one. Results and report:
# docs/results/<composition>-pool-<matched|mismatched>/. Running time on 2 CPU cores (the README's "Budget"): a run
# about as long as the composition's own (zh+math 20-45, math+code 31-61, zh+code 40-48 minutes of one core), 7 runs
# per pool and composition over the three seeds (Arrow once).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
smartfed="$repo/.venv/bin/smartfed"; python="$repo/.venv/bin/python"
[[ -x "$smartfed" ]] || { smartfed=smartfed; python=python; }
composition="${1:?usage: coverage.sh COMPOSITION matched|mismatched [compare options]}"; pool="${2:?matched or mismatched}"; shift 2
# the default pool's modules where a run finds them (shipped, else built); an error naming the build command if neither
shipped="$("$python" -c 'from smartfed.pool.resolve import default_pool_folders as d; print(d("smollm2-135m-instruct")[0].parent)')"
coverage="${SMARTFED_CACHE:-$HOME/.cache/smartfed}/pools/smollm2-135m-instruct-coverage"
case "$composition/$pool" in
  zh+math/matched) folders=("$shipped/zh" "$coverage/math-eqn") ;;
  math+code/matched) folders=("$coverage/math-pal" "$shipped/code") ;;
  zh+code/matched) folders=("$shipped/zh" "$shipped/code") ;;
  zh+math/mismatched) folders=("$shipped/code" "$shipped/instruct") ;;
  math+code/mismatched) folders=("$shipped/zh" "$shipped/instruct") ;;
  zh+code/mismatched) folders=("$shipped/math" "$shipped/instruct") ;;
  *) echo "coverage.sh: expected zh+math, math+code or zh+code and matched or mismatched, found $composition $pool" >&2; exit 2 ;;
esac
list=""; for folder in "${folders[@]}"; do list+="${list:+,}\"$folder\""; done
tuning=(); [[ -f "$repo/docs/tuning/$composition/tuning.json" ]] && tuning=(--tuning "$repo/docs/tuning/$composition")
compare=(compare "$composition" --out "$repo/docs/results/$composition-pool-$pool" --methods smartfed,module-router,arrow
         --seeds 0,1,2 "${tuning[@]}" --set "pool.adapters=[$list]" "$@")
pending="$("$smartfed" "${compare[@]}" --pending)"  # a module is built only for a run that needs it
for folder in "${folders[@]}"; do
  if [[ -n "$pending" && ! -f "$folder/smartfed_card.json" ]]; then  # the card lands last: it marks a finished module
    mkdir -p "$coverage"
    flock "$coverage/.build.lock" "$smartfed" pool build --skill "$(basename "$folder")" --out "$folder"
  fi
done
exec "$smartfed" "${compare[@]}"
