"""The layer embedding the agent sees at each decision point (11 features, each in [0, 1]).

AMC's embedding with the reference code's quirks fixed: the cost features are the *true* MACs of
the network as decided so far, not "if every later layer went to the lower bound", and the
feature-map size and per-layer MACs the paper lists are actually included.

==  ====================  =====================================================================
 #  name                  meaning
==  ====================  =====================================================================
 0  index                 t / (T − 1)
 1  consumer_is_linear    1 if the layer reading these channels is a Linear (fc), else 0
 2  width                 original channel count / largest channel count in the network
 3  feature_map           log2(H·W of these channels + 1) / log2(largest H·W + 1)
 4  kernel                kernel area of the consumer / 9 (capped at 1)
 5  point_macs            base MACs of every layer this decision touches / base MACs
 6  reduced               MACs removed by decisions 0..t−1 / base MACs
 7  rest                  MACs of layers touched only by later decisions / base MACs
 8  budget                the constraint's budget (fraction of the base cost)
 9  budget_left           (limit − cost with t and later at their lower bound) / base cost
10  previous_keep_ratio   keep ratio chosen at t − 1 (1 at t = 0)
==  ====================  =====================================================================
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from amc.envs.interfaces import Wall
from amc.pruning.structure import PrunableStructure

FEATURES = (
    "index",
    "consumer_is_linear",
    "width",
    "feature_map",
    "kernel",
    "point_macs",
    "reduced",
    "rest",
    "budget",
    "budget_left",
    "previous_keep_ratio",
)


class LayerEmbedding:
    def __init__(self, structure: PrunableStructure, wall: Wall) -> None:
        self.structure, self.wall = structure, wall
        self.base_macs = structure.macs(structure.widths)
        terms = {t.name: t for t in structure.layer_terms}
        widest = max(structure.widths)
        n = len(structure.points)
        fmaps = [terms[p.producers[0]].feature_map for p in structure.points]
        big = max(fmaps)
        self.static = np.zeros((n, 6), dtype=np.float32)
        base = structure.layer_macs(structure.widths)
        for t, p in enumerate(structure.points):
            consumer = terms[p.consumers[0]]
            touched = [i for i, term in enumerate(structure.layer_terms) if t in term.points]
            self.static[t] = [
                t / max(1, n - 1),
                float(consumer.kind == "linear"),
                p.channels / widest,
                math.log2(fmaps[t] + 1) / math.log2(big + 1),
                min(1.0, consumer.kernel_area / 9),
                sum(base[i] for i in touched) / self.base_macs,
            ]
        self.later_only = []  # per t: layer indices whose points are all > t
        for t in range(n):
            self.later_only.append(
                [i for i, term in enumerate(structure.layer_terms) if term.points and min(term.points) > t]
            )

    def __call__(self, t: int, decided: Sequence[int], previous_ratio: float) -> np.ndarray:
        widths = self.structure.widths
        current = [*decided, *widths[len(decided) :]]
        layer = self.structure.layer_macs(current)
        reduced = (self.base_macs - sum(layer)) / self.base_macs
        rest = sum(layer[i] for i in self.later_only[t]) / self.base_macs
        c = self.wall.constraint
        floor = c.cost([*decided, *self.wall.minimum[len(decided) :]])
        left = min(1.0, max(0.0, (c.limit - floor) / c.base_cost))
        dynamic = [reduced, rest, c.budget, left, previous_ratio]
        return np.clip(np.concatenate([self.static[t], np.asarray(dynamic, dtype=np.float32)]), 0, 1).astype(np.float32)
