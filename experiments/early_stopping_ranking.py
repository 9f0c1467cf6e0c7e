"""Would scoring stop early on clearly worse strategies keep a search's ranking? (issue 15: Spearman >= 0.99)

python experiments/early_stopping_ranking.py RUN_DIR [--threads 2] [--z 3 4] [--first 500 1000 2000]

Rebuilds the search of RUN_DIR (its config.yaml: base, search-val, calibration, rankings, eval precision) and
records, for every strategy its episodes.jsonl holds, which search-val images the pruned network gets right
(prefix cache off). It then replays the search in episode order with a stopping rule: after each batch, from
``--first`` images on, a strategy stops once its upper confidence bound, p + z·sqrt(p(1-p)/k) on the k images
seen, falls below the best full score so far, and its partial accuracy p is what the search would have
recorded. Correct means argmax = label; in bfloat16 ≈ 0.2 % of images tie at the top, which the search's
``topk`` may break the other way, so these full scores can differ from episodes.jsonl by a few images.
Printed per rule: the rank correlation of the recorded scores with the full ones, the fraction of images
evaluated, and whether the best strategy stays the same.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch
from scipy.stats import spearmanr

from amc.config import load_settings
from amc.io import read_jsonl
from amc.runtime.process import set_threads
from amc.settings import SearchConfig
from amc.strategy.task import build_task
from amc.training.distributed import pick_device


def per_image_correct(run_dir: Path) -> tuple[torch.Tensor, int]:
    """``[strategies, images]`` booleans of the search's own scoring, and the scorer's batch size."""
    cfg = load_settings(run_dir / "config.yaml", SearchConfig)
    scorer = build_task(dataclasses.replace(cfg, prefix_cache_mb=0, resume=None), pick_device(cfg.device)).scorer
    rows = read_jsonl(run_dir / "episodes.jsonl")
    correct = [scorer.logits(r["channels"]).argmax(1) == scorer.val_labels for r in rows]
    return torch.stack(correct).cpu(), scorer.settings.batch_size


def replay(correct: torch.Tensor, batch: int, z: float, first: int) -> tuple[list[float], float]:
    """The scores a search stopping by this rule records (percent), and the fraction of images it evaluates."""
    strategies, images = correct.shape
    full = correct.float().mean(1) * 100
    best, recorded, evaluated = -1.0, [], 0
    for s in range(strategies):
        score, seen = full[s].item(), images
        for k in range(first, images, batch):
            p = correct[s, :k].float().mean().item()
            if best >= 0 and 100 * (p + z * (max(p * (1 - p), 1e-4) / k) ** 0.5) < best:
                score, seen = 100 * p, k
                break
        recorded.append(score)
        evaluated += seen
        if seen == images:
            best = max(best, score)
    return recorded, evaluated / (strategies * images)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--z", type=float, nargs="+", default=[2.0, 3.0, 4.0])
    parser.add_argument("--first", type=int, nargs="+", default=[500, 1000, 2000])
    args = parser.parse_args()
    set_threads(args.threads)
    correct, batch = per_image_correct(args.run_dir)
    full = (correct.float().mean(1) * 100).tolist()
    print(f"{len(full)} strategies of {args.run_dir}; search-val top-1 min {min(full):.2f}, max {max(full):.2f} %")
    for z in args.z:
        for first in args.first:
            recorded, fraction = replay(correct, batch, z, first)
            rho = spearmanr(full, recorded).statistic
            same = max(range(len(full)), key=recorded.__getitem__) == max(range(len(full)), key=full.__getitem__)
            print(f"z {z:g}, first {first}: Spearman {rho:.4f}, images evaluated {fraction:.3f}, same best {same}")


if __name__ == "__main__":
    main()
