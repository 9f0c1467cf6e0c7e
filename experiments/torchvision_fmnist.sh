#!/usr/bin/env bash
# AMC on torchvision networks (trained from scratch, 10 classes) on Fashion-MNIST at its own 28 px, 1 input
# channel (the first conv is adapted). Each model: amc.train for $EPOCHS epochs, then amc.search at
# flops_budget=0.5 with prune_residual true and false (DDPG, $EPISODES episodes, $WARMUP warm-up) and the
# uniform baseline. Results land in $OUT/<model>/...; see experiments/RESULTS.md.
# MODELS="resnet18" runs one; THREADS=1 when something else shares the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/torchvision_fmnist}
epochs=${EPOCHS:-5}
episodes=${EPISODES:-80}
warmup=${WARMUP:-25}
threads=${THREADS:-2}
mkdir -p "$out"
for model in ${MODELS:-resnet18 mobilenet_v3_small}; do
  m=(model=torchvision "model.name=$model")
  if [ ! -f "$out/$model/train/best.pt" ]; then
    /usr/bin/time -v python -m amc.train "${m[@]}" logger=none "threads=$threads" "train.epochs=$epochs" \
      "hydra.run.dir=$out/$model/train" > "$out/$model.train.log" 2>&1 || { echo "$model training failed"; exit 1; }
  fi
  grep -E "^done:" "$out/$model.train.log"
  for spec in "ddpg_residual prune_residual=true" "ddpg_within prune_residual=false" \
              "uniform_residual agent=uniform prune_residual=true" "uniform_within agent=uniform prune_residual=false"; do
    read -r name args <<<"$spec"
    run="$out/$model/$name"
    [ -f "$run/strategy.json" ] && continue
    /usr/bin/time -v python -m amc.search "${m[@]}" "checkpoint=$out/$model/train/best.pt" flops_budget=0.5 \
      logger=none "threads=$threads" "episodes=$episodes" "agent.warmup_episodes=$warmup" $args \
      "hydra.run.dir=$run" > "$run.log" 2>&1 || { echo "$model $name failed"; exit 1; }
    echo "$model $name: $(grep -E '^best:' "$run.log")"
    grep -E "^median" "$run.log" || true
  done
done
