"""Least-squares reconstruction of the layer that consumes pruned channels (AMC §3, ThiNet-style).

For a consumer layer (1×1 or k×k Conv2d, or Linear) we sample feature-map points from calibration
images and refit its weights on the kept input channels so that its outputs match the *original*
network's outputs: ``min_W ‖X_kept·Wᵀ − Y‖²``. k×k convs are unfolded into patches, so one solver
covers every kernel size.

Open loop (AMC): X comes from the original network, so ``XᵀX`` and ``XᵀY`` are computed once per
search and every strategy is a small solve on a sub-block of them. Closed loop: X comes from the
network pruned so far, layer by layer (for export; slower, usually more accurate).
A tiny ridge keeps the solve finite when dead channels make ``XᵀX`` singular.
"""

from amc.pruning.reconstruction.closed_loop import CLOSED_LOOP_MEMORY_MB, closed_loop_overrides
from amc.pruning.reconstruction.open_loop import OpenLoopReconstructor
from amc.pruning.reconstruction.refit import RIDGE, full_width_weight, input_keep, solve, unreconstructed
from amc.pruning.reconstruction.rows import (
    ConsumerStats,
    collect_stats,
    consumer_layers,
    input_columns,
    sample_rows,
    well_posed,
)

__all__ = [
    "CLOSED_LOOP_MEMORY_MB",
    "RIDGE",
    "ConsumerStats",
    "OpenLoopReconstructor",
    "closed_loop_overrides",
    "collect_stats",
    "consumer_layers",
    "full_width_weight",
    "input_columns",
    "input_keep",
    "sample_rows",
    "solve",
    "unreconstructed",
    "well_posed",
]
