"""Does scoring in bfloat16 keep a search's ranking of strategies? (issue 15: Spearman >= 0.99 before adopting it)

python experiments/eval_precision_ranking.py RUN_DIR [--threads 2] [--limit N]

Rebuilds the search of RUN_DIR (its saved config.yaml: the same base, search-val images, calibration and
rankings), scores every strategy its episodes.jsonl recorded once in float32 and once in bfloat16, without
the prefix cache, and prints the rank correlation, the largest differences and the evaluation times.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
from pathlib import Path

import torch
from scipy.stats import kendalltau, spearmanr

from amc.config import load_settings
from amc.io import read_jsonl
from amc.runtime.process import set_threads
from amc.settings import SearchConfig
from amc.strategy.task import build_task
from amc.training.distributed import pick_device


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--limit", type=int, default=None, help="only the first N strategies (a quick look)")
    args = parser.parse_args()
    set_threads(args.threads)
    cfg = load_settings(args.run_dir / "config.yaml", SearchConfig)
    rows = read_jsonl(args.run_dir / "episodes.jsonl")[: args.limit]
    device = pick_device(cfg.device)
    scores: dict[str, list[float]] = {}
    seconds: dict[str, list[float]] = {}
    for precision in ("float32", "bfloat16"):
        task_cfg = dataclasses.replace(cfg, eval_precision=precision, prefix_cache_mb=0, resume=None)
        scorer = build_task(task_cfg, device).scorer
        results = [scorer.score(r["channels"]) for r in rows]
        scores[precision] = [s.accuracy for s in results]
        seconds[precision] = [s.timings["evaluate_s"] for s in results]
        del scorer
    f32, bf16 = scores["float32"], scores["bfloat16"]
    diffs = sorted((abs(a - b), i) for i, (a, b) in enumerate(zip(f32, bf16, strict=True)))
    best32, best16 = max(range(len(f32)), key=f32.__getitem__), max(range(len(bf16)), key=bf16.__getitem__)
    print(f"{len(rows)} strategies of {args.run_dir}, search-val {cfg.metric} (%), {torch.get_num_threads()} threads")
    print(f"Spearman {spearmanr(f32, bf16).statistic:.4f}, Kendall tau {kendalltau(f32, bf16).statistic:.4f}")
    reproduced = sum(abs(a - r["accuracy"]) < 1e-6 for a, r in zip(f32, rows, strict=True))
    print(f"recorded scores reproduced in float32: {reproduced} of {len(rows)}")
    print(f"|float32 - bfloat16|: median {statistics.median(d for d, _ in diffs):.3f}, max {diffs[-1][0]:.3f} points")
    print(
        f"best in float32: episode {rows[best32]['episode']} ({f32[best32]:.2f}); "
        f"in bfloat16: episode {rows[best16]['episode']} ({bf16[best16]:.2f} bf16, {f32[best16]:.2f} float32)"
    )
    for precision, values in seconds.items():
        print(f"median evaluate seconds per strategy, {precision}: {statistics.median(values):.3f}")


if __name__ == "__main__":
    main()
