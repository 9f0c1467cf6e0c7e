"""A per-layer latency table measured on the current device, for ``latency_budget``.

Each Conv2d/Linear is timed alone at batch 1 (best of ``repeats``) on its real input size, with its channel counts set
to each allowed count of the decision point that controls them (the other side at full width);
a layer's latency for a pair of counts is modelled as ``t_full · f_out(out) · f_in(in)``, monotone
in both. The sum over layers misses what isolated layers do not show (BN, activations, pooling, the
framework's per-call overhead), which made predictions far off end to end (0.600 predicted, 0.895
measured on FMNIST-MBV1). So the sum is calibrated on two real networks, timed end to end like
``amc.deploy`` does: the base and the smallest network the wall allows. The network's latency is
``offset + scale · Σ layers``, exact at both ends and monotone in between.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn as nn

from amc.io import write_json_atomic
from amc.pruning.structure import LayerCostTerm, PrunableStructure
from amc.strategy.budget import allowed_counts


def _time_ms(layer: nn.Module, x: torch.Tensor, repeats: int) -> float:
    with torch.inference_mode():
        for _ in range(3):
            layer(x)
        samples = []
        for _ in range(repeats):
            if x.is_cuda:
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            layer(x)
            if x.is_cuda:
                torch.cuda.synchronize()
            samples.append(time.perf_counter() - t0)
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
        scale: float = 1.0,
        offset: float = 0.0,
    ) -> None:
        self.structure, self.full, self.out_factor, self.in_factor = structure, full, out_factor, in_factor
        self.scale, self.offset = scale, offset

    @classmethod
    def measure(
        cls,
        model: nn.Module,
        structure: PrunableStructure,
        device: torch.device,
        channel_round: int,
        lower_bound: float,
        repeats: int = 20,
    ) -> LatencyTable:
        modules = dict(model.named_modules())
        grids = [allowed_counts(w, channel_round, lower_bound) for w in structure.widths]
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
        table.calibrate(model, device, [g[0] for g in grids])
        return table

    def calibrate(self, model: nn.Module, device: torch.device, smallest: Sequence[int]) -> None:
        """Fit ``offset`` and ``scale`` so that the base and the smallest allowed network get their
        measured end-to-end latency (PyTorch eager, batch 1, median, this process's threads)."""
        from amc.deployment import torch_latency
        from amc.pruning.apply import prune_model

        widths = self.structure.widths
        small = prune_model(model, self.structure, smallest, reconstruction="none").to(device).eval()
        x = torch.randn(self.structure.input_size, device=device)
        threads = torch.get_num_threads()
        measured_base = torch_latency(model.eval(), x, threads).median_ms
        measured_small = torch_latency(small, x, threads).median_ms
        self.scale, self.offset = 1.0, 0.0
        summed_base, summed_small = self(widths), self(smallest)
        if measured_base > measured_small and summed_base > summed_small:
            self.scale = (measured_base - measured_small) / (summed_base - summed_small)
        else:  # noise hid the difference: keep the table's shape, anchored at the base
            self.scale = measured_base / summed_base
        self.offset = measured_base - self.scale * summed_base

    @classmethod
    def cached(
        cls,
        cache_dir: Path,
        model: nn.Module,
        structure: PrunableStructure,
        device: torch.device,
        channel_round: int,
        lower_bound: float,
    ) -> LatencyTable:
        """``measure``, once per model layout, device, input size, threads and channel grid (≈ 1 min on FMNIST-MBV1).

        The table depends on layer shapes, not weights: the key is the cost terms' shapes.
        """
        shapes = [
            (t.name, t.kind, t.positions, t.kernel_area, t.out_channels, t.in_per_group) for t in structure.layer_terms
        ]
        key = json.dumps(
            ["calibrated", shapes, structure.widths, str(device), torch.get_num_threads(), channel_round, lower_bound]
        )
        name = f"latency_{structure.arch_name.rsplit('.', 1)[-1]}_{hashlib.sha256(key.encode()).hexdigest()[:12]}.json"
        path = Path(cache_dir).expanduser() / "latency" / name
        if path.is_file():
            saved = json.loads(path.read_text())
            outs = [{int(c): f for c, f in d.items()} for d in saved["out_factor"]]
            ins = [{int(c): f for c, f in d.items()} for d in saved["in_factor"]]
            print(f"using the cached latency table {path}")
            return cls(structure, saved["full"], outs, ins, saved["scale"], saved["offset"])
        table = cls.measure(model, structure, device, channel_round, lower_bound)
        payload = {"full": table.full, "out_factor": table.out_factor, "in_factor": table.in_factor, "key": key}
        payload |= {"scale": table.scale, "offset": table.offset}
        write_json_atomic(path, payload)
        return table

    def __call__(self, channels: Sequence[int]) -> float:
        total = 0.0
        for term, base, fo, fi in zip(
            self.structure.layer_terms, self.full, self.out_factor, self.in_factor, strict=True
        ):
            f = fo.get(int(channels[term.out_point]), 1.0) if term.out_point is not None else 1.0
            g = fi.get(int(channels[term.in_point]), 1.0) if term.in_point is not None else 1.0
            total += base * f * g
        return self.offset + self.scale * total
