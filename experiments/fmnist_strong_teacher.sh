#!/usr/bin/env bash
# Issue 15's strong-teacher study on FMNIST-MBV1, every step resumable (rerun the script after a kill):
#   1. a >= 93 % base from ONE amc.train schedule (trained only when runs/strong/base/best.pt is missing);
#   2. the AMC search at 0.5 MACs from it (shared settings);
#   3. its pruned.pt fine-tuned 4 epochs with KD from that base, and with CE only.
# The schedule (24 epochs, lr 0.1 cosine, half an epoch of warm-up, wd 5e-5, crop+flip) is chosen from the
# earlier runs in experiments/RESULTS.md (12 epochs: 92.55 %; 12 + a 10-epoch warm restart: 93.00 %); at
# ≈ 205 s per epoch it is ≈ 80 min of a 2-core CPU. OUT (default runs/strong), EPOCHS (default 24), THREADS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
out=${OUT:-runs/strong}
epochs=${EPOCHS:-24}
threads=${THREADS:-2}  # THREADS=1 leaves a core for other work
mkdir -p "$out"
if [ ! -f "$out/base/summary.json" ]; then
  if [ -f "$out/base/config.yaml" ]; then
    python -m amc.train "resume=$out/base" "threads=$threads" >> "$out/base.log" 2>&1
  else
    python -m amc.train model=mobilenet_v1 data=fashion_mnist "train.epochs=$epochs" train.lr=0.1 \
      train.warmup_epochs=0.5 train.weight_decay=5e-5 logger=none seed=0 "threads=$threads" "hydra.run.dir=$out/base" \
      > "$out/base.log" 2>&1
  fi
fi
tr '\r' '\n' < "$out/base.log" | grep -E "epoch [0-9]+/[0-9]+:|done" | tail -3
if [ ! -f "$out/search/pruned.pt" ]; then
  if [ -f "$out/search/config.yaml" ]; then
    python -m amc.search "resume=$out/search" "threads=$threads" >> "$out/search.log" 2>&1
  else
    python -m amc.search experiment=fmnist_benchmark "checkpoint=$out/base/best.pt" logger=none "threads=$threads" \
      seed=2018 "hydra.run.dir=$out/search" > "$out/search.log" 2>&1
  fi
fi
grep -E "^best:" "$out/search.log"
for kind in kd ce; do
  [ -f "$out/ft_$kind/summary.json" ] && continue
  if [ -f "$out/ft_$kind/config.yaml" ]; then
    python -m amc.finetune "resume=$out/ft_$kind" "threads=$threads" >> "$out/ft_$kind.log" 2>&1
  else
    python -m amc.finetune "checkpoint=$out/search/pruned.pt" "distill=$kind" train.epochs=4 data.augment=false \
      logger=none "threads=$threads" "hydra.run.dir=$out/ft_$kind" > "$out/ft_$kind.log" 2>&1
  fi
  tr '\r' '\n' < "$out/ft_$kind.log" | grep -E "before fine-tuning|epoch [0-9]+/[0-9]+:|done"
done
