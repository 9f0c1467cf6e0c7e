"""A per-layer latency table measured on the current device, for ``latency_budget``.

Each Conv2d/Linear is timed alone at batch 1 (best of ``repeats``) on its real input size, with its channel counts set
to each allowed count of the decision point that controls them (the other side at full width);
a layer's latency for a pair of counts is modelled as ``t_full · f_out(out) · f_in(in)``, monotone
in both. The sum over layers misses what isolated layers do not show (BN, activations, pooling, the
framework's per-call overhead, which dominates a small network at batch 1), so the sum is mapped onto whole
networks timed end to end like ``amc.deploy`` does: a piecewise-linear, monotone curve through *anchors*
(layer sum, measured ms). The table starts with ``UNIFORM_ANCHORS`` of them: uniform networks from the smallest the
wall allows to the base, evenly spaced along the channel grid, so the curve bends where latency does. During a
search, every new best strategy is timed end to end too (:class:`EndToEndProbe`) and becomes an anchor, so the curve
is exact where the search is looking, and a strategy whose measured latency misses the budget is never exported.
"""

from __future__ import annotations

import bisect
import hashlib
import itertools
import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn as nn

from amc.io import write_json_atomic
from amc.pruning.structure import LayerCostTerm, PrunableStructure
from amc.timing import forward_seconds

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from amc.timing import LatencyTimer

Anchor = tuple[float, float]  # (layer sum, end-to-end ms)
Grids = Sequence[Sequence[int]]  # each decision point's allowed channel counts (``budget.allowed_counts``)
MEASURED_SLACK = 0.01  # a probed strategy counts as within budget up to 1 % over (the export is timed again)
UNIFORM_ANCHORS = 7  # uniform networks timed end to end: the smallest, five between, the base
CROWDED_FLOOR = 0.75  # warn when the smallest network alone measures this share of the budget or more


def _time_ms(layer: nn.Module, x: torch.Tensor, repeats: int) -> float:
    with torch.inference_mode():
        for _ in range(3):
            layer(x)
        samples = [forward_seconds(layer, x) for _ in range(repeats)]
    return 1000 * min(samples)  # the least-disturbed run: robust to other load on the machine


def _layer(term: LayerCostTerm, original: nn.Module, out_c: int, in_c: int) -> tuple[nn.Module, tuple[int, ...]]:
    if isinstance(original, nn.Linear):
        return nn.Linear(in_c, out_c), (1, in_c)
    depthwise = original.groups > 1
    groups = out_c if depthwise else 1
    conv = nn.Conv2d(
        out_c if depthwise else in_c,
        out_c,
        original.kernel_size,
        original.stride,
        original.padding,
        groups=groups,
        bias=original.bias is not None,
    )
    side = round((term.feature_map) ** 0.5) * original.stride[0]
    return conv, (1, conv.in_channels, side, side)


def _monotone(factors: dict[int, float]) -> dict[int, float]:
    """Timing noise must not make more channels look faster: the action wall relies on monotone costs."""
    out, running = {}, 0.0
    for c in sorted(factors):
        running = max(running, factors[c])
        out[c] = running
    full = out[max(out)]  # the full width is the reference: its factor is exactly 1
    return {c: f / full for c, f in out.items()}


class LatencyTable:
    def __init__(
        self,
        structure: PrunableStructure,
        full: list[float],
        out_factor: list[dict[int, float]],
        in_factor: list[dict[int, float]],
        anchors: Sequence[Anchor] = (),
    ) -> None:
        self.structure, self.full, self.out_factor, self.in_factor = structure, full, out_factor, in_factor
        self.anchors: list[Anchor] = sorted((float(a), float(b)) for a, b in anchors)

    @classmethod
    def measure(
        cls,
        model: nn.Module,
        structure: PrunableStructure,
        grids: Grids,
        timer: LatencyTimer,
        repeats: int = 20,
        anchor_run_s: float = 2.0,
    ) -> LatencyTable:
        """Each layer timed alone at every allowed count of its decision points (``grids``: the wall's channel grid
        of each point), on the model's device, then anchored end to end (``calibrate``, ``anchor_run_s`` of
        alternating calls per timed pair)."""
        device = next(model.parameters()).device
        modules = dict(model.named_modules())
        full, outs, ins = [], [], []
        for term in structure.layer_terms:
            m = modules[term.name]
            out_w = term.out_channels
            in_w = term.in_per_group if term.in_point is not None or m.__class__ is nn.Linear else m.in_channels
            depthwise = isinstance(m, nn.Conv2d) and m.groups > 1

            def measure(out_c: int, in_c: int, term=term, m=m) -> float:
                layer, shape = _layer(term, m, out_c, in_c)
                return _time_ms(layer.to(device).eval(), torch.randn(shape, device=device), repeats)

            base = measure(out_w, in_w if not depthwise else out_w)
            full.append(base)
            outs.append(
                _monotone({c: measure(c, in_w if not depthwise else c) / base for c in grids[term.out_point]})
                if term.out_point is not None
                else {}
            )
            ins.append(
                _monotone({c: measure(out_w, c) / base for c in grids[term.in_point]})
                if term.in_point is not None
                else {}
            )
        table = cls(structure, full, outs, ins)
        table.calibrate(model, timer, grids, anchor_run_s)
        return table

    def calibrate(self, model: nn.Module, timer: LatencyTimer, grids: Grids, run_s: float = 2.0) -> None:
        """Anchor the curve at ``UNIFORM_ANCHORS`` uniform networks, from the smallest allowed (every point at the
        first count of its grid) to the base, timed end to end by ``timer`` (PyTorch eager, batch 1, the fastest
        of calls alternating with the base, in a process of their own)."""
        from amc.pruning.apply import prune_model

        smallest = [g[0] for g in grids]
        small = prune_model(model, self.structure, smallest, reconstruction="none").eval()
        measured_small, measured_base = timer.latency(small, run_s)
        self.anchors = [(self.layer_sum(self.structure.widths), measured_base)]
        if measured_small >= measured_base:  # noise hid the difference: proportional to the sum
            return
        self.anchors.insert(0, (self.layer_sum(smallest), measured_small))
        for step in range(1, UNIFORM_ANCHORS - 1):
            fraction = step / (UNIFORM_ANCHORS - 1)
            channels = [g[round(fraction * (len(g) - 1))] for g in grids]
            net = prune_model(model, self.structure, channels, reconstruction="none").eval()
            # the faster of two timings (load only slows one), in the table's own ms: the base anchor's, scaled by
            # the pair's ratio (the machine's speed drifts between pairs)
            ratio = min(network_ms / base_ms for network_ms, base_ms in (timer.latency(net, run_s) for _ in range(2)))
            self.add_anchor(channels, ratio * measured_base)

    def add_anchor(self, channels: Sequence[int], measured_ms: float) -> None:
        """A network timed end to end. The smallest and the base anchor stay exact (the wall's floor and the
        budget's reference), so a timing is clamped between them and only ever adds an inner anchor."""
        smallest, base = self.anchors[0], self.anchors[-1]
        point = (self.layer_sum(channels), min(max(measured_ms, smallest[1]), base[1]))
        if not smallest[0] < point[0] < base[0]:
            return
        inner = [a for a in self.anchors[1:-1] if a[0] != point[0]]  # a network timed again replaces itself
        self.anchors = [smallest, *sorted([*inner, point]), base]

    def end_to_end(self, layer_sum: float) -> float:
        """The curve through the anchors: piecewise linear, monotone, extended by its end segments."""
        if len(self.anchors) < 2:
            return layer_sum * (self.anchors[0][1] / self.anchors[0][0] if self.anchors else 1.0)
        sums = [s for s, _ in self.anchors]
        # Load on the machine only ever slows a timing, so the curve is the anchors' lower monotone envelope: an
        # anchor timed slower than a larger network is lowered to it (a running max would raise every larger one).
        ms = list(itertools.accumulate((m for _, m in reversed(self.anchors)), min))[::-1]
        i = bisect.bisect_left(sums, layer_sum, 1, len(sums) - 1)
        s0, m0, s1, m1 = sums[i - 1], ms[i - 1], sums[i], ms[i]
        return m0 + (m1 - m0) * (layer_sum - s0) / (s1 - s0) if s1 > s0 else m1

    @classmethod
    def cached(
        cls, cache_dir: Path, model: nn.Module, structure: PrunableStructure, grids: Grids, timer: LatencyTimer
    ) -> LatencyTable:
        """``measure``, once per model layout, device, input size, threads and channel grid (≈ 1 min on FMNIST-MBV1).

        The table depends on layer shapes, not weights: the key is the cost terms' shapes.
        """
        shapes = [
            (t.name, t.kind, t.positions, t.kernel_area, t.out_channels, t.in_per_group) for t in structure.layer_terms
        ]
        key = json.dumps(
            [
                f"{UNIFORM_ANCHORS} uniform anchors, faster of two timings, lower envelope, in a process of its own "
                "with oneDNN's default kernel cache",
                shapes,
                structure.widths,
                str(next(model.parameters()).device),
                torch.get_num_threads(),
                [list(g) for g in grids],
                *(
                    [timer.runtime] if getattr(timer, "runtime", "pytorch") != "pytorch" else []
                ),  # tables timed in eager keep their key
            ]
        )
        name = f"latency_{structure.arch_name.rsplit('.', 1)[-1]}_{hashlib.sha256(key.encode()).hexdigest()[:12]}.json"
        path = Path(cache_dir).expanduser() / "latency" / name
        if path.is_file():
            saved = json.loads(path.read_text())
            outs = [{int(c): f for c, f in d.items()} for d in saved["out_factor"]]
            ins = [{int(c): f for c, f in d.items()} for d in saved["in_factor"]]
            log.info(f"using the cached latency table {path}")
            return cls(structure, saved["full"], outs, ins, [tuple(a) for a in saved["anchors"]])
        table = cls.measure(model, structure, grids, timer)
        payload = {"full": table.full, "out_factor": table.out_factor, "in_factor": table.in_factor, "key": key}
        payload["anchors"] = table.anchors
        write_json_atomic(path, payload)
        return table

    def layer_sum(self, channels: Sequence[int]) -> float:
        total = 0.0
        for term, base, fo, fi in zip(
            self.structure.layer_terms, self.full, self.out_factor, self.in_factor, strict=True
        ):
            f = fo.get(int(channels[term.out_point]), 1.0) if term.out_point is not None else 1.0
            g = fi.get(int(channels[term.in_point]), 1.0) if term.in_point is not None else 1.0
            total += base * f * g
        return total

    def __call__(self, channels: Sequence[int]) -> float:
        """Predicted end-to-end latency (ms) of the network with these channels."""
        return self.end_to_end(self.layer_sum(channels))


class EndToEndProbe:
    """Times a candidate network end to end (batch 1, PyTorch eager) against the base with ``timer``, as the
    export is checked; each timing also becomes an anchor of the table."""

    def __init__(self, model: nn.Module, table: LatencyTable, timer: LatencyTimer, min_run_s: float = 1.5) -> None:
        self.model, self.table, self.timer, self.min_run_s = model.eval(), table, timer, min_run_s

    def __call__(self, channels: Sequence[int]) -> float:
        """The measured latency ratio to the base; the table learns it as an anchor."""
        from amc.pruning.apply import prune_model

        net = prune_model(self.model, self.table.structure, list(channels), reconstruction="none")
        cpu_before, wall_before = time.process_time(), time.perf_counter()
        network_ms, base_ms = self.timer.latency(net, self.min_run_s)
        cpu_s, wall_s = time.process_time() - cpu_before, time.perf_counter() - wall_before
        ratio = network_ms / base_ms
        predicted = self.table(channels) / self.table.anchors[-1][1]
        # both sides of the ratio, and the CPU this process used while it waited: in a search, the same networks
        # timed 1.5-2x slower than in a quiet process (RESULTS, session 17), and this tells whose load it was
        log.info(
            f"timed a new best end to end: {network_ms:.3f} ms vs the base's {base_ms:.3f} ms (ratio {ratio:.3f}; "
            f"the table predicted {predicted:.3f}, its base anchor is {self.table.anchors[-1][1]:.3f} ms); the "
            f"search process used {cpu_s:.2f} s of CPU in the {wall_s:.2f} s it waited"
        )
        self.table.add_anchor(channels, ratio * self.table.anchors[-1][1])  # in the table's own ms
        return ratio


def floor_note(floor: float, budget: float, lower_bound: float) -> tuple[str, bool]:
    """One line on what the budget leaves the search once the smallest network (``floor``: its latency over the
    base's) is paid for, and whether it is crowded: the smallest network alone nearly fills the budget, so most
    strategies are squeezed near the floor."""
    crowded = floor >= CROWDED_FLOOR * budget
    line = (
        f"latency budget {budget:g} of the base: the smallest network the wall allows (every layer at "
        f"lower_bound={lower_bound:g}) measures {floor:.3f} of the base on this machine, which leaves "
        f"{max(0.0, budget - floor):.3f} for the search"
    )
    if crowded:
        line += "; nearly every strategy will sit near that floor: raise the budget or lower lower_bound"
    return line, crowded
