"""Seconds per strategy of every evaluator of the predictiveness study, timed alone (nothing else running).

The study's own seconds column was taken while other jobs shared the CPU at times; this times each evaluator on the
same strategies of its flops-0.1 sample, one after another, on one thread, after one untimed warm-up score each, and
writes the medians (and their ratio to lsq's) to experiments/predictiveness/evaluator_seconds.md.

    python experiments/evaluator_seconds.py [strategies=5] [threads=1]
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
import time
from datetime import date

from predictiveness import EVALUATORS, OUT, REPORT, settings
from script_options import parse_options, positive_int

from amc.io import write_text_atomic


def main(argv: list[str]) -> None:
    options = parse_options(
        argv, {"strategies": positive_int, "threads": positive_int}, {"strategies": 5, "threads": 1},
        "python experiments/evaluator_seconds.py [strategies=5] [threads=1]",
    )  # fmt: skip
    from amc.runtime.hardware import cpu_description, eval_dtype
    from amc.runtime.process import seed_everything, set_threads
    from amc.strategy.task import build_task
    from amc.training.distributed import pick_device

    rows = [json.loads(line) for line in (OUT / "budget_0.1" / "evaluator_scores.jsonl").open()]
    channels = [row["channels"] for row in rows[: options["strategies"]]]
    cfg = settings("0.1", options["threads"])
    set_threads(cfg.threads)
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    scorer = build_task(cfg, device).scorer
    seconds: dict[str, float] = {}
    for name, (score, steps) in EVALUATORS.items():
        scorer.use_score(score)
        scorer.settings = dataclasses.replace(scorer.settings, kd_steps=steps)
        scorer.score(channels[0])  # warm-up: first-call allocations, oneDNN's kernel choices
        times = []
        for strategy in channels:
            start = time.perf_counter()
            scorer.score(strategy)
            times.append(time.perf_counter() - start)
        seconds[name] = statistics.median(times)
        print(f"{name:16} {seconds[name]:7.2f} s", flush=True)
    dtype = str(eval_dtype(cfg.eval_precision, device)).removeprefix("torch.")
    lines = [
        "| evaluator | seconds per strategy (median) | × lsq's |",
        "|---|---|---|",
        *(f"| {name} | {s:.2f} | {s / seconds['lsq']:.2f} |" for name, s in seconds.items()),
        "",
        f"FMNIST-MBV1 at flops 0.1, the first {len(channels)} strategies of the predictiveness sample, each evaluator "
        f"timed alone after a warm-up, {cfg.threads} thread(s), scored in {dtype} on all 5,000 search-val images; "
        f"{cpu_description()}, {date.today().isoformat()}. Command: python experiments/evaluator_seconds.py "
        + " ".join(argv),
    ]
    write_text_atomic(REPORT / "evaluator_seconds.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
