#!/usr/bin/env bash
# Every run behind the README's results, most important first, as one resumable queue of single runs that
# W workers take side by side (each with 2/W threads); then `smartfed report` over each results folder.
#
#   experiments/all.sh [WORKERS]        # default 2; stop it any time (kill the process group), rerun to go on
#
# The queue: the zh+math comparison (seed 0, then 1, then 2), its coverage pools, the math+code and zh+code
# comparisons, their coverage pools, the data-fraction sweep. A finished run is skipped, a stopped one
# resumes at its last round. Running time on 2 CPU cores: see the README's "Budget".
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
workers="${1:-2}"
threads=$(( 2 / workers > 0 ? 2 / workers : 1 ))
# Arrow trains nothing and is deterministic: compare runs it at the first seed only, which stands for every seed.
main=(smartfed fedit smartfed-topk ffa-lora module-router lorahub)
reuse=(smartfed module-router)
queue() {
  for composition in zh+math math+code zh+code; do
    echo "$composition.sh --methods arrow --seeds 0"
    for seed in 0 1 2; do for m in "${main[@]}"; do echo "$composition.sh --methods $m --seeds $seed"; done; done
    if [[ $composition == zh+math ]]; then coverage_jobs zh+math; fi
  done
  coverage_jobs math+code; coverage_jobs zh+code
  for seed in 0 1 2; do  # the claim: SmartFed on 10% of the data against FedIT on all of it
    echo "data-fraction.sh --methods smartfed --fractions 0.1 --seeds $seed"; echo "data-fraction.sh --methods fedit --fractions 1 --seeds $seed"
  done
}
coverage_jobs() {
  for pool in matched mismatched; do echo "coverage.sh $1 $pool --methods arrow --seeds 0"; done
  for seed in 0 1 2; do for pool in matched mismatched; do for m in "${reuse[@]}"; do
    echo "coverage.sh $1 $pool --methods $m --seeds $seed"; done; done; done
}
export OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads"
queue | xargs -P "$workers" -L 1 bash -c 'log="$0/docs/results/.logs/$(echo "$*" | tr " /" "__").log"; mkdir -p "$(dirname "$log")";
  "$0/experiments/$1" "${@:2}" --no-report > "$log" 2>&1 || echo "failed: $* (see $log)"' "$repo"
smartfed="$repo/.venv/bin/smartfed"; [[ -x "$smartfed" ]] || smartfed=smartfed
for folder in "$repo"/docs/results/*/; do
  runs=("$folder"*/summary.json)
  [[ -f "${runs[0]}" ]] || continue
  report="$folder/report"; [[ "$folder" == *-data-fraction/ ]] && report="$folder/report-data-fraction"
  "$smartfed" report "${runs[@]%/summary.json}" --out "$report" > /dev/null
  echo "report: $report/report.md"
done
