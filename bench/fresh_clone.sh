#!/usr/bin/env bash
# The README's main job on a fresh clone, timed: clone this repository's HEAD into a temporary folder
# with ../shared beside it, an empty $SMARTFED_CACHE (no converted model, no built pool), then
# `./scripts/setup.sh` and `smartfed run`; checks that no pool module was trained.
#
#   bench/fresh_clone.sh [WORKDIR]      # default /tmp/smartfed-fresh; ~10 min on 2 CPU cores
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="${1:-/tmp/smartfed-fresh}"
rm -rf "$work" && mkdir -p "$work"
git clone -q "$repo" "$work/main" && ln -s "$(cd "$repo/../shared" && pwd)" "$work/shared"
cd "$work/main"
export SMARTFED_CACHE="$work/cache" OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
start=$(date +%s)
./scripts/setup.sh
setup=$(date +%s)
.venv/bin/smartfed run --set run.out_dir="$work/runs"
end=$(date +%s)
echo "setup $((setup - start)) s, smartfed run $((end - setup)) s, total $((end - start)) s"
if find "$SMARTFED_CACHE" -name smartfed_card.json | grep -q .; then echo "a pool module was trained" >&2; exit 1; fi
echo "no pool module was trained"
