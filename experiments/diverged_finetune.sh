#!/bin/bash
# Predictiveness strategy (flops 0.25, episode 3) whose 0.5-epoch KD at lr 0.005 diverged: export it as the
# study does (lsq, closed loop) and fine-tune it again, without and with gradient clipping.
cd /work/main
P=.venv/bin/python
D=runs/diverge19
$P -m amc.export checkpoint=models/weights/fmnist_mobilenet_v1.pt "channels=[24,40,80,48,56,88,400,192,264,104,464,176,440,976]" \
  selection=lsq reconstruction=closed calibration_images=1000 threads=1 output=$D/pruned.pt hydra.run.dir=$D/export > $D/export.log 2>&1
for clip in null 2.0; do
  $P -m amc.finetune checkpoint=$D/pruned.pt distill=kd data.augment=false train.epochs=1 train.max_steps_per_epoch=215 \
    train.lr=0.005 train.warmup_epochs=0.1 train.grad_clip_norm=$clip logger=none threads=1 seed=7 \
    hydra.run.dir=$D/ft_clip_$clip > $D/ft_clip_$clip.log 2>&1
done
