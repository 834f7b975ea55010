#!/usr/bin/env bash
# Every run behind the README's results, most important first, as one resumable queue of single runs that
# W workers take side by side (each with cores/W threads unless told); then `smartfed report` over each results folder.
#
#   experiments/all.sh [WORKERS] [THREADS]   # default 2 workers, the cores shared among them; stop it any time
#                                            # (kill the process group), rerun to go on
#   UNTIL=09:40 experiments/all.sh 2         # start no run that would end after 09:40 (one run taking RUN_MINUTES,
#                                            # default 60; LoRAHub's took 56-61): a time-boxed session ends
#                                            # with no half-done run
#
# A run whose folder has a summary is passed over without starting `smartfed compare` (seconds for the whole finished
# queue); RESCORE=1 hands every job to compare, which also rescores a finished run whose evaluation settings changed.
#
# Two queues at once share the work: a run one of them is writing, the other passes over (the run folder's lock).
# So a queue can be restarted one worker at a time while the old one's last runs finish: `all.sh 1 1` for each.
#
# The queue: zh+math's comparison (every method at seed 0, the coverage pools at seed 0, every method at seeds 1
# and 2), then the data-fraction sweep (the paper's 10% claim, on zh+math); then math+code and zh+code the same
# way (without the sweep); then every composition's coverage pools at seeds 1 and 2. A finished run is skipped, a stopped one resumes at its
# last round, a run another process is writing is passed over. Running time on 2 CPU cores (the README's "Budget",
# measured per run): 105 runs of 20-61 minutes of one core each (about an hour for LoRAHub), about 70 hours of one
# core in all, 35 on two workers; a session goes on where the last one stopped.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
workers="${1:-2}"
cores="$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)"  # (GNU nproc honours those)
threads="${2:-$(( cores / workers > 0 ? cores / workers : 1 ))}"
# Arrow trains nothing and is deterministic: compare runs it at the first seed only, which stands for every seed.
main=(smartfed fedit smartfed-topk ffa-lora module-router lorahub)
reuse=(smartfed module-router)
queue() {
  for composition in zh+math math+code zh+code; do
    echo "$composition.sh --methods arrow --seeds 0"
    for m in "${main[@]}"; do echo "$composition.sh --methods $m --seeds 0"; done
    coverage_jobs "$composition" 0  # the first seed of every pool before more seeds of any
    for seed in 1 2; do for m in "${main[@]}"; do echo "$composition.sh --methods $m --seeds $seed"; done; done
    if [[ $composition == zh+math ]]; then data_fraction_jobs; fi
  done
  # the coverage study's later seeds last: its first seed shows where reuse wins; every composition's comparison
  # at three seeds comes first
  for composition in zh+math math+code zh+code; do coverage_jobs "$composition" 1 2; done
}
source "$repo/experiments/run_folder.sh"; export -f run_folder
data_fraction_jobs() {  # the claim: SmartFed on 10% of the data against FedIT on all of it
  for seed in 0 1 2; do
    echo "data-fraction.sh --methods smartfed --fractions 0.1 --seeds $seed"; echo "data-fraction.sh --methods fedit --fractions 1 --seeds $seed"
  done
}
coverage_jobs() {  # COMPOSITION SEED...: Arrow (deterministic) at the first seed, the reuse methods at each
  local composition=$1; shift
  for seed in "$@"; do
    if [[ $seed == 0 ]]; then  # the matched pool's first job builds its module: the other worker runs mismatched jobs meanwhile
      echo "coverage.sh $composition matched --methods arrow --seeds 0"; echo "coverage.sh $composition mismatched --methods arrow --seeds 0"
    fi
    # the matched pool first (where reuse should win), except while its module builds at the first seed
    pools=(matched mismatched); [[ $seed == 0 ]] && pools=(mismatched matched)
    for pool in "${pools[@]}"; do for m in "${reuse[@]}"; do echo "coverage.sh $composition $pool --methods $m --seeds $seed"; done; done
  done
}
if [[ -n "${UNTIL:-}" ]]; then
  until_s="$(date -d "$UNTIL" +%s)" || { echo "UNTIL=$UNTIL: expected a time date(1) reads, e.g. 09:40" >&2; exit 2; }
  (( until_s > $(date +%s) )) || { echo "UNTIL=$UNTIL: expected a time after now (past midnight: UNTIL='tomorrow 01:00')" >&2; exit 2; }
  [[ "${RUN_MINUTES:-60}" =~ ^[0-9]+$ ]] || { echo "RUN_MINUTES=$RUN_MINUTES: expected whole minutes" >&2; exit 2; }
  export UNTIL_S="$until_s" RUN_S=$(( 10#${RUN_MINUTES:-60} * 60 ))
else
  unset UNTIL_S RUN_S
fi
export OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads"
queue | xargs -P "$workers" -L 1 bash -c 'log="$0/docs/results/.logs/$(echo "$*" | tr " /" "__").log"; mkdir -p "$(dirname "$log")";
  if [[ -z "${RESCORE:-}" ]] && folder="$(run_folder "$@")" && [[ -f "$0/$folder/summary.json" ]]; then exit 0; fi
  if [[ -n "${UNTIL_S:-}" ]] && (( $(date +%s) + RUN_S > UNTIL_S )); then echo "not started (it would end after UNTIL): $*"; exit 0; fi
  echo "== $(date -u +%FT%TZ) pid $$" >> "$log";
  "$0/experiments/$1" "${@:2}" --no-report >> "$log" 2>&1 || echo "failed: $* (see $log)"' "$repo"
"$repo/experiments/report.sh"
