"""``amc.profile``: the MACs and params of any model at an example input, per layer."""

from __future__ import annotations

import torch
import torch.nn as nn

from amc.api.inputs import check_example_input, check_model
from amc.pruning.counting import CostReport
from amc.pruning.counting import profile as count_costs

Profile = CostReport


def profile(model: nn.Module, example_input: torch.Tensor) -> Profile:
    """MACs (FLOPs = 2 x MACs) and params of ``model`` per sample at ``example_input``'s size, with one row per
    Conv2d and Linear layer; ``str(profile)`` renders the table. The model is run once, in eval mode, on zeros.

    :param model: any ``nn.Module``.
    :param example_input: one batch the model takes; the costs are per sample at its size.
    """
    model = check_model(model)
    example = check_example_input(model, example_input)
    return count_costs(model, (1, *example.shape[1:]))
