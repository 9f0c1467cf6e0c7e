#!/usr/bin/env bash
# FMNIST-MBV1 search benchmark (../shared/reference/benchmarks.md): our DDPG (two seeds), random search
# and the uniform baseline, all from the fixed base weights with the shared settings
# (50 warm-up + 200 episodes, lower bound 0.2, channels rounded to 8, 1,000 calibration images x 10 points,
# all 5,000 search-val images, top-1). Results land in $OUT/<name>/ (default runs/bench); see experiments/RESULTS.md.
# RUNS="ddpg_s2019" runs only the named ones; EXTRA="prefix_cache_mb=0" adds overrides to every run.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${BASE:-../shared/benchmarks/fmnist_mbv1_base.pth}
out=${OUT:-runs/bench}
only=${RUNS:-}
mkdir -p "$out"
common=(experiment=fmnist_benchmark "checkpoint=$base" logger=none threads=2 ${EXTRA:-})
for spec in "ddpg_s2018 agent=ddpg seed=2018" "uniform agent=uniform seed=2018" \
            "random_s2018 agent=random seed=2018" "ddpg_s2019 agent=ddpg seed=2019"; do
  read -r name args <<<"$spec"
  [ -n "$only" ] && [[ " $only " != *" $name "* ]] && continue
  [ -f "$out/$name/strategy.json" ] && [ -f "$out/$name/pruned.pt" ] && continue
  /usr/bin/time -v python -m amc.search "${common[@]}" $args "hydra.run.dir=$out/$name" \
    > "$out/$name.log" 2>&1 || { echo "$name failed"; exit 1; }
  grep -E "best:|median|wall time|Maximum resident" "$out/$name.log"
done
