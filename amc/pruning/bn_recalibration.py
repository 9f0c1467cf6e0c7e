"""Adaptive BatchNorm (EagleEye, ECCV 2020): a pruned network's BN statistics recomputed on training images.

Pruning changes what every later layer sees, so the base network's running means and variances no longer fit;
recomputing them (no gradients, no weight changes) before scoring makes a candidate's score track its accuracy
after fine-tuning much more closely than plain evaluation does.
"""

from __future__ import annotations

import torch
import torch.nn as nn

BATCHNORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


@torch.no_grad()
def recalibrate_batchnorms(model: nn.Module, images: torch.Tensor, batch_size: int = 250) -> nn.Module:
    """Replace every BatchNorm's running statistics by the cumulative average over ``images`` (in place).

    The statistics are new tensors, so a pruned copy that shares unchanged tensors with its base leaves the base
    as it was. Only the BatchNorm layers run in training mode (dropout and the rest stay in eval mode).
    """
    norms = [m for m in model.modules() if isinstance(m, BATCHNORMS) and m.track_running_stats]
    if not norms:
        return model
    was_training = model.training
    model.eval()
    momenta = []
    for bn in norms:
        bn.running_mean = torch.zeros_like(bn.running_mean)
        bn.running_var = torch.ones_like(bn.running_var)
        bn.num_batches_tracked = torch.zeros_like(bn.num_batches_tracked)
        momenta.append(bn.momentum)
        bn.momentum = None  # a cumulative average: every batch weighs the same
        bn.train()
    for start in range(0, len(images), batch_size):
        model(images[start : start + batch_size])
    for bn, momentum in zip(norms, momenta, strict=True):
        bn.momentum = momentum
    return model.train(was_training)
