"""The same strategies fine-tuned twice by experiments/predictiveness.py, without and with clipped gradients
(clip=NORM): which fine-tunings diverged under each, and what clipping did to those that did not.

    python experiments/clip_comparison.py [budget=0.5] [clip=2]
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

from scipy import stats
from script_options import fractions, parse_options, positive_float

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from amc.io import read_jsonl  # noqa: E402  (ROOT first)
from amc.strategy.promotion import diverged  # noqa: E402


def main(argv: list[str]) -> None:
    options = parse_options(
        argv,
        {"budget": fractions, "clip": positive_float},
        {"budget": ["0.5"], "clip": 2.0},
        "python experiments/clip_comparison.py [budget=0.5] [clip=2]",
    )
    work = ROOT / "runs" / "predictiveness" / f"budget_{options['budget'][0]}"
    plain = {r["episode"]: r for r in read_jsonl(work / "promotion.jsonl")}
    clipped = read_jsonl(work / f"clip{options['clip']:g}" / "promotion.jsonl")
    pairs = [(plain[r["episode"]], r) for r in clipped if r["episode"] in plain]
    rescued = [(a, b) for a, b in pairs if diverged(a)]
    healthy = [b["finetuned_test_top1"] - a["finetuned_test_top1"] for a, b in pairs if not diverged(a)]
    print(f"{len(pairs)} strategies fine-tuned both ways (test top-1 after FT, %)")
    print(f"diverged without clipping: {len(rescued)}; with clipping: {sum(diverged(b) for _, b in pairs)}")
    for a, b in rescued:
        print(f"  episode {a['episode']}: {a['finetuned_test_top1']:.2f} without, {b['finetuned_test_top1']:.2f} with")
    if len(healthy) > 1:
        mean, sd = statistics.fmean(healthy), statistics.stdev(healthy)
        half = stats.t.ppf(0.975, len(healthy) - 1) * sd / len(healthy) ** 0.5
        print(
            f"the {len(healthy)} others, with minus without: median {statistics.median(healthy):+.2f}, "
            f"mean {mean:+.2f} ± {half:.2f} (95 % t), each: {', '.join(f'{d:+.2f}' for d in healthy)}"
        )


if __name__ == "__main__":
    main(sys.argv[1:])
