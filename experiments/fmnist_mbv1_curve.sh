#!/usr/bin/env bash
# The accuracy–MACs curve on FMNIST-MBV1 (issues 14 and 15): DDPG, random and uniform at flops budgets
# 0.25, 0.5 and 0.75 from the fixed base weights with the shared settings; then the table, the plot and
# the latency table (experiments/curve_report.py). RUNS="0.25/ddpg_s2018 ..." runs only those; finished
# runs (pruned.pt present) are skipped, so the script resumes. Results in $OUT (default runs/curve).
# The search defaults apply (selection=lsq, bfloat16 scoring where native); EXTRA="selection=l1" adds overrides.
set -euo pipefail
cd "$(dirname "$0")/.."
base=${BASE:-../shared/benchmarks/fmnist_mbv1_base.pth}
out=${OUT:-runs/curve}
only=${RUNS:-}
common=(experiment=fmnist_benchmark "checkpoint=$base" logger=none threads=${THREADS:-2} ${EXTRA:-})
for budget in 0.25 0.5 0.75; do
  for spec in "ddpg_s2018 agent=ddpg seed=2018" "uniform agent=uniform seed=2018" \
              "random_s2018 agent=random seed=2018" "ddpg_s2019 agent=ddpg seed=2019"; do
    read -r name args <<<"$spec"
    run="$budget/$name"
    [ -n "$only" ] && [[ " $only " != *" $run "* ]] && continue
    [ -f "$out/$run/pruned.pt" ] && continue
    mkdir -p "$out/$budget"
    if [ -f "$out/$run/config.yaml" ]; then  # killed earlier: continue it
      python -m amc.search "resume=$out/$run" >> "$out/$run.log" 2>&1
    else
      /usr/bin/time -v python -m amc.search "${common[@]}" "flops_budget=$budget" $args "hydra.run.dir=$out/$run" \
        > "$out/$run.log" 2>&1
    fi
    echo "$run: $(grep -E '^best:' "$out/$run.log")"
  done
done
python experiments/curve_report.py "$out"
