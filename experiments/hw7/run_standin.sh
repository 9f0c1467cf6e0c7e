#!/usr/bin/env bash
# The whole HW7 pipeline on the Fashion-MNIST stand-in (28 px; the course's 256-px crops become 28-px,
# i.e. the whole image), with epochs reduced to fit a 2-core CPU. Results: runs/hw7/*, table in RESULTS.md.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${OUT:-runs/hw7}
data=${DATA:-runs/hw7-data/food-11}
E_TEACHER=${E_TEACHER:-3} E_STUDENT=${E_STUDENT:-6} E_SLIM=${E_SLIM:-1} EPISODES=${EPISODES:-60}
[ -d "$data/training" ] || python experiments/hw7/make_fmnist_food11.py "$data"
d=(data=food11 "data.root=$data" data.crop=28 data.search_val_size=500 logger=none "threads=${THREADS:-2}")
adam=(train.optimizer=adamw train.lr=1e-3 train.weight_decay=1e-2 train.batch_size=32 train.channels_last=false)
step() { [ -f "$out/$1/$2" ] && return 0; shift 2; python -m "$@"; }

# Part 2: the teacher (ResNet-18, course stem) and the student from scratch / with KD (T=20, alpha=0.5)
step teacher best.pt amc.train model=resnet18 +model.kwargs.small_input=false "${d[@]}" train.epochs=$E_TEACHER \
  "${adam[@]}" "hydra.run.dir=$out/teacher"
step scratch best.pt amc.train model=hw7_student "${d[@]}" train.epochs=$E_STUDENT "${adam[@]}" "hydra.run.dir=$out/scratch"
step kd best.pt amc.train model=hw7_student "${d[@]}" train.epochs=$E_STUDENT "${adam[@]}" \
  "teacher=$out/teacher/best.pt" distill.temperature=20 distill.alpha=0.5 "hydra.run.dir=$out/kd"
# Part 3: network slimming, width x 0.95 five times, fine-tuning (fresh AdamW) after each step
step slim slimming.json amc.slim "checkpoint=$out/kd/best.pt" "${d[@]}" steps=5 train.epochs=$E_SLIM \
  train.batch_size=32 "hydra.run.dir=$out/slim"
# Part 4: fp32 / fp16 / uint8 files of the KD student, and torch's int8 PTQ latency
step quantize quantization.json amc.quantize "checkpoint=$out/kd/best.pt" data=food11 "data.root=$data" data.crop=28 \
  data.search_val_size=500 "threads=${THREADS:-2}" "hydra.run.dir=$out/quantize"
# The course's test script: size check, uint8 decode, predictions for testing/
[ -f "$out/pred.csv" ] || python -m amc.predict "data.root=$data" "model_file=$out/quantize/model_uint8.pt" \
  "output=$out/pred.csv" crop=28
# AMC on the student with a params budget (the slimming schedule's last step keeps 0.668 of the params)
step amc strategy.json amc.search model=hw7_student "${d[@]}" "checkpoint=$out/kd/best.pt" params_budget=0.668 \
  channel_round=4 episodes=$EPISODES agent.warmup_episodes=20 calibration_images=500 "hydra.run.dir=$out/amc"
step amc_ft summary.json amc.finetune "checkpoint=$out/amc/pruned.pt" "${d[@]}" "teacher=$out/teacher/best.pt" \
  distill.temperature=20 distill.alpha=0.5 train.epochs=$E_SLIM "${adam[@]}" "hydra.run.dir=$out/amc_ft"
step amc_quantize quantization.json amc.quantize "checkpoint=$out/amc_ft/best.pt" data=food11 "data.root=$data" \
  data.crop=28 data.search_val_size=500 int8_ptq=false "hydra.run.dir=$out/amc_quantize"
echo "done: see $out"
