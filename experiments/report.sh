#!/usr/bin/env bash
# The reports behind the README's results, from the committed run folders (no run is started): experiments/report.py.
#
#   experiments/report.sh        # about a minute on 2 cores; all.sh runs it at the end
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
python="$repo/.venv/bin/python"; [[ -x "$python" ]] || python=python3
exec "$python" "$repo/experiments/report.py" "$@"
