#!/usr/bin/env bash
# The paper's data-efficiency claim: SmartFed (the defaults of smartfed run) and FedIT, each trained on 10%,
# 25% and 100% of every client's data, on one composition (default zh+math).
#
#   experiments/data-fraction.sh [COMPOSITION] [--quick] [--set section.key=value ...]
#
# Shares runs/<composition>/ with the composition script (its 100% runs are reused, not rerun);
# the report goes to runs/<composition>/report-data-fraction/ (table, ratios, score and loss vs fraction).
# Running time on 2 CPU cores: about 26 min for the four 10% and 25% runs with the 100% runs already
# made (sum of their wall times, measured while the machine was shared: an upper bound).
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
smartfed="$repo/.venv/bin/smartfed"  # the README's set-up; else whatever `smartfed` is on PATH
[[ -x "$smartfed" ]] || smartfed=smartfed
if [[ $# -gt 0 && "$1" != --* ]]; then composition="$1"; shift; else composition="zh+math"; fi
exec "$smartfed" compare "$composition" --out "runs/$composition" --methods smartfed,fedit --fractions 0.1,0.25,1 "$@"
