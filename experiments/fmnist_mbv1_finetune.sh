#!/usr/bin/env bash
# FMNIST-MBV1 fine-tuning benchmark: the AMC strategy (runs/bench/ddpg_s2018) with KD and with CE only,
# and the uniform baseline (runs/bench/uniform) with KD, same epochs; the teacher is the fixed base.
# Both strategies are first exported with closed-loop reconstruction (amc.export).
# EPOCHS (default 4), AUGMENT (default false: the teacher's logits are then computed once and cached),
# OUT (default runs/bench/ft<EPOCHS>).
set -euo pipefail
cd "$(dirname "$0")/.."
epochs=${EPOCHS:-4}
augment=${AUGMENT:-false}
out=${OUT:-runs/bench/ft$epochs}
base=${BASE:-../shared/benchmarks/fmnist_mbv1_base.pth}
mkdir -p "$out"
for source in ddpg_s2018 uniform; do
  [ -f "runs/bench/export_$source/pruned.pt" ] && continue
  python -m amc.export "checkpoint=$base" "strategy=runs/bench/$source/strategy.json" reconstruction=closed threads=2 \
    "hydra.run.dir=runs/bench/export_$source" > "runs/bench/export_$source.log" 2>&1
  grep -E "top-1|MACs" "runs/bench/export_$source.log"
done
for spec in "amc_kd ddpg_s2018 kd" "amc_ce ddpg_s2018 ce" "uniform_kd uniform kd"; do
  read -r name source kind <<<"$spec"
  [ -f "$out/$name/summary.json" ] && continue
  /usr/bin/time -v python -m amc.finetune "checkpoint=runs/bench/export_$source/pruned.pt" "distill=$kind" \
    "train.epochs=$epochs" "data.augment=$augment" logger=none threads=2 "hydra.run.dir=$out/$name" \
    > "$out/$name.log" 2>&1
  tr '\r' '\n' < "$out/$name.log" | grep -E "before fine-tuning|teacher logits of|epoch [0-9]+/[0-9]+:|Elapsed"
done
