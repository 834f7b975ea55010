# run_folder JOB...: the run folder (under the repository) of one queue job as all.sh writes it, named as
# compare names it (compare._name); fails where it cannot tell. Sourced by all.sh and device/pack.sh.
run_folder() {
  local script=$1 composition="" pool="" method="" seed=0 fraction=1; shift
  [[ $script == coverage.sh ]] && { composition=$1; pool=$2; shift 2; }
  while (( $# )); do
    case $1 in --methods) method=$2 ;; --seeds) seed=$2 ;; --fractions) fraction=$2 ;; *) return 1 ;; esac; shift 2
  done
  [[ -n $method && "$method$seed$fraction" != *,* ]] || return 1
  local name="$method$([[ $fraction == 1 ]] || echo "-frac$fraction")$([[ $seed == 0 ]] || echo "-seed$seed")"
  case $script in
    coverage.sh) echo "docs/results/$composition-pool-$pool/$name" ;;
    data-fraction.sh) echo "docs/results/zh+math-data-fraction/$name" ;;
    *) echo "docs/results/${script%.sh}/$name" ;;
  esac
}
