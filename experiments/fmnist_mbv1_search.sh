#!/usr/bin/env bash
# FMNIST-MBV1 search benchmark (../shared/reference/benchmarks.md): our DDPG (two seeds), random search
# and the uniform baseline, all from the fixed base weights with the shared settings
# (50 warm-up + 200 episodes, lower bound 0.2, channels rounded to 8, 1,000 calibration images x 10 points,
# all 5,000 search-val images, top-1). Results land in runs/bench/<name>/; see experiments/RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${BASE:-../shared/benchmarks/fmnist_mbv1_base.pth}
common=(experiment=fmnist_benchmark "checkpoint=$base" logger=none threads=2 eval_batch_size=250)
for spec in "ddpg_s2018 agent=ddpg seed=2018" "uniform agent=uniform seed=2018" \
            "random_s2018 agent=random seed=2018" "ddpg_s2019 agent=ddpg seed=2019"; do
  read -r name args <<<"$spec"
  [ -f "runs/bench/$name/strategy.json" ] && [ -f "runs/bench/$name/pruned.pt" ] && continue
  /usr/bin/time -v python -m amc.search "${common[@]}" $args "hydra.run.dir=runs/bench/$name" \
    > "runs/bench/$name.log" 2>&1 || { echo "$name failed"; exit 1; }
  grep -E "best:|median|wall time" "runs/bench/$name.log"
done
