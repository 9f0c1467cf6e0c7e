"""A latency search's export timed again, in a fresh process, against its base: did it meet the budget?

For each run dir: the exported ``pruned.pt`` and the base it records, timed by alternating single batch-1 calls for
``seconds`` (the median of the pairs' ratios and their quartiles), beside what ``strategy.json`` says.

    python experiments/latency_recheck.py RUN_DIR [RUN_DIR ...] [seconds=10]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from script_options import fail

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def main(argv: list[str]) -> None:
    from amc.models import load_checkpoint
    from amc.timing import paired_timing

    seconds = float(next((a.split("=", 1)[1] for a in argv if a.startswith("seconds=")), 10))
    runs = [Path(a) for a in argv if not a.startswith("seconds=")]
    if not runs or not all((r / "strategy.json").is_file() and (r / "pruned.pt").is_file() for r in runs):
        fail("usage: python experiments/latency_recheck.py RUN_DIR [RUN_DIR ...] [seconds=10] (finished searches)")
    for run in runs:
        strategy = json.loads((run / "strategy.json").read_text())
        pruned = load_checkpoint(run / "pruned.pt").eval()
        base = load_checkpoint(strategy["base_checkpoint"], name="mobilenet_v1", num_classes=10, in_channels=1,
                               small_input=True).eval()  # fmt: skip
        size = pruned.checkpoint_metadata.get("image_size", 28)
        x = torch.randn(1, 1, size, size)
        timing = paired_timing(pruned, base, x, torch.get_num_threads(), seconds)
        low, high = timing.spread
        print(
            f"{run}: budget {strategy['budget']:g}; strategy.json measured {strategy.get('measured_latency_ratio'):.3f}"
            f" (met: {strategy.get('latency_budget_met')}); timed again {timing.median_ratio:.3f} "
            f"[{low:.3f}, {high:.3f}] of the base over {len(timing.ratios)} pairs; MACs {strategy['macs_ratio']:.3f}, "
            f"test top-1 {strategy['test_top1']:.2f} %"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
