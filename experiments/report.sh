#!/usr/bin/env bash
# The reports behind the README's results, from the committed run folders (no run is started): experiments/report.py;
# then the README's results tables copied from them (experiments/readme_tables.py).
#
#   experiments/report.sh        # about two minutes on 2 cores; all.sh runs it at the end
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
python="$repo/.venv/bin/python"; [[ -x "$python" ]] || python=python3
"$python" "$repo/experiments/report.py" "$@"
exec "$python" "$repo/experiments/readme_tables.py"
