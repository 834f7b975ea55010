#!/usr/bin/env bash
# The reports behind the README's results, from the committed run folders (no run is started):
#   docs/results/<composition>/report/            the comparison and its coverage pools (<composition>-pool-*), one report
#   docs/results/<composition>-data-fraction/report-data-fraction/
#   docs/results/<composition>-matched-rebuild/report/   Arrow over a rebuild of the matched module (README)
#
#   experiments/report.sh        # seconds; all.sh runs it at the end
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
smartfed="$repo/.venv/bin/smartfed"; [[ -x "$smartfed" ]] || smartfed=smartfed
shopt -s nullglob
unset LC_ALL; export LC_COLLATE=C  # run folders in byte order, whatever the locale: the tables' row order (tests/test_results.py)
for composition in zh+math math+code zh+code; do
  for part in "" "-data-fraction"; do
    folders=("$repo/docs/results/$composition$part/")
    [[ -z $part ]] && folders+=("$repo"/docs/results/"$composition"-pool-*/)
    runs=(); for folder in "${folders[@]}"; do runs+=("$folder"*/summary.json); done
    (( ${#runs[@]} )) || continue
    report="$repo/docs/results/$composition$part/report${part}"
    "$smartfed" report "${runs[@]%/summary.json}" --out "$report" > /dev/null
    echo "report: ${report#$repo/}/report.md (${#runs[@]} runs)"
  done
done
for folder in "$repo"/docs/results/*-matched-rebuild/; do
  runs=("$folder"*/summary.json); (( ${#runs[@]} )) || continue
  "$smartfed" report "${runs[@]%/summary.json}" --out "${folder}report" > /dev/null
  echo "report: ${folder#$repo/}report/report.md (${#runs[@]} runs)"
done
