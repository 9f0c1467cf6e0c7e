"""Does rebuilding a search's finalists as the export builds them pick a better network? (issue 15)

python experiments/export_finalists.py RUN_DIR [--count 5] [--threads 2]

Rebuilds the search of RUN_DIR from its saved config.yaml (float32, no prefix cache), exports its ``count``
best strategies as ``amc.search`` exports (``amc.strategy.best.export_finalists``) and prints, for each, the
search's own score, the exported network's search-val and test top-1 (%), and the seconds the export took.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from amc.config import load_settings
from amc.data import stack_dataset
from amc.io import read_jsonl
from amc.runtime.process import set_threads
from amc.settings import SearchConfig
from amc.strategy.best import export_finalists, finalists
from amc.strategy.task import build_task
from amc.training.distributed import pick_device
from amc.training.evaluation import evaluate, tensor_batches


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--count", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    set_threads(args.threads)
    cfg = load_settings(args.run_dir / "config.yaml", SearchConfig)
    cfg = dataclasses.replace(cfg, eval_precision="float32", prefix_cache_mb=0, resume=None, export_candidates=1)
    rows = read_jsonl(args.run_dir / "episodes.jsonl")
    device = pick_device(cfg.device)
    task = build_task(cfg, device)
    splits = [
        stack_dataset(task.data.search_val, limit=cfg.search_val_images),
        stack_dataset(task.data.test, limit=cfg.test_images),
    ]
    images = cfg.export_calibration_images
    print(f"{args.run_dir}: export {cfg.export_reconstruction} loop, {images} calibration images")
    print("| rank | episode | search score | export search-val top-1 | export test top-1 | export s |")
    print("|---|---|---|---|---|---|")
    for rank, row in enumerate(finalists(rows, args.count), 1):
        t0 = time.perf_counter()
        _, net, _, _ = export_finalists(cfg, task, row, [row], device)  # one row: exported as the search exports it
        seconds = time.perf_counter() - t0
        val, test = (evaluate(net, tensor_batches(*s, cfg.eval_batch_size), device)["top1"] for s in splits)
        print(f"| {rank} | {row['episode']} | {row['accuracy']:.2f} | {val:.2f} | {test:.2f} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
