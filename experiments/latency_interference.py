"""Does timing a network in alternation with the base change what either measures?

The latency probes of a search time a candidate against the base one forward call at a time (``amc.timing.
paired_latency``). Their log showed the base itself measuring 6.4 ms beside a small candidate and 9-11 ms beside a
large one. This script times uniform networks of FMNIST-MBV1 three ways, each in this one process at batch 1:
alone (a block of calls of one network), alternating single calls with the base (as the probes do), and
alternating blocks of calls (each block's first call left out), and prints each network's and the base's fastest
call in milliseconds.

    python experiments/latency_interference.py [checkpoint=PATH] [threads=2] [seconds=1.5]

Run it with nothing else on the machine; results in experiments/RESULTS.md ("Latency").
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import torch
from script_options import parse_options, positive_float, positive_int

from amc import models
from amc.pruning.apply import prune_model
from amc.pruning.structure import analyse
from amc.strategy.budget import allowed_counts
from amc.timing import forward_seconds, paired_latency

ROOT = Path(__file__).resolve().parents[1]
FRACTIONS = (0.0, 0.3, 0.6, 1.0)  # of each decision point's grid: the smallest network ... the base itself
BLOCK = 8  # calls per block when blocks alternate


def fastest_alone(net: torch.nn.Module, x: torch.Tensor, seconds: float) -> float:
    for _ in range(5):
        forward_seconds(net, x)
    best, start = math.inf, time.perf_counter()
    while time.perf_counter() - start < seconds:
        best = min(best, forward_seconds(net, x))
    return 1000 * best


def blocks(net: torch.nn.Module, base: torch.nn.Module, x: torch.Tensor, seconds: float) -> tuple[float, float]:
    """Blocks of BLOCK calls, alternating; the first call of each block (caches still holding the other) is dropped."""
    best = {"net": math.inf, "base": math.inf}
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        for name, model in (("base", base), ("net", net)):
            times = [forward_seconds(model, x) for _ in range(BLOCK)]
            best[name] = min(best[name], *times[1:])
    return 1000 * best["net"], 1000 * best["base"]


def main(argv: list[str]) -> None:
    options = parse_options(
        argv,
        {"checkpoint": str, "threads": positive_int, "seconds": positive_float},
        {"checkpoint": str(ROOT / "models" / "weights" / "fmnist_mobilenet_v1.pt"), "threads": 2, "seconds": 1.5},
        "python experiments/latency_interference.py [checkpoint=SHIPPED_BASE] [threads=2] [seconds=1.5]",
    )
    checkpoint, threads, seconds = options["checkpoint"], options["threads"], options["seconds"]
    torch.set_num_threads(threads)
    base = models.load_checkpoint(checkpoint).eval()
    x = torch.randn(1, 1, 28, 28)
    structure = analyse(base, tuple(x.shape))
    grids = [allowed_counts(w, 8, 0.2) for w in structure.widths]
    print(f"{torch.get_num_threads()} threads, fastest call in ms, each way timed for {seconds:g} s")
    print("| network (MACs / base) | alone | alternating calls: net / base / ratio | alternating blocks: idem |")
    print("|---|---|---|---|")
    with torch.inference_mode():
        alone_base = fastest_alone(base, x, seconds)
        for fraction in FRACTIONS:
            channels = [g[round(fraction * (len(g) - 1))] for g in grids]
            net = prune_model(base, structure, channels, reconstruction="none").eval()
            ratio = structure.macs(channels) / structure.macs(structure.widths)
            alone = fastest_alone(net, x, seconds)
            call_net, call_base = paired_latency(net, base, x, threads, seconds)
            block_net, block_base = blocks(net, base, x, seconds)
            print(
                f"| uniform {fraction:g} ({ratio:.3f}) | {alone:.3f} (base alone {alone_base:.3f}, ratio "
                f"{alone / alone_base:.3f}) | {call_net:.3f} / {call_base:.3f} / {call_net / call_base:.3f} | "
                f"{block_net:.3f} / {block_base:.3f} / {block_net / block_base:.3f} |",
                flush=True,
            )


if __name__ == "__main__":
    main(sys.argv[1:])
