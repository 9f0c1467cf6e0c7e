"""Seconds per strategy of every evaluator of the predictiveness study, timed alone (nothing else running).

The study's own seconds column was taken while other jobs shared the CPU at times; this times each evaluator on the
same strategies of a budget's predictiveness sample, one after another, on one thread, after one untimed warm-up
score each. Each budget's medians (and their ratio to lsq's), with the machine, date and command, are kept in
experiments/predictiveness/evaluator_seconds.json, so timing one budget leaves the others' as they were measured;
experiments/predictiveness/evaluator_seconds.md is written from all of them.

    python experiments/evaluator_seconds.py [budgets=0.1] [strategies=5] [threads=1]
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
import time
from datetime import date

from predictiveness import EVALUATORS, OUT, REPORT, markdown_table, settings
from script_options import fail, fractions, parse_options, positive_int

from amc.io import write_json_atomic, write_text_atomic

RESULTS = REPORT / "evaluator_seconds.json"


def time_budget(budget: str, count: int, threads: int) -> dict:
    """Median seconds per strategy of each evaluator on the first ``count`` strategies of ``budget``'s sample."""
    from amc.runtime.hardware import cpu_description, eval_dtype
    from amc.runtime.process import seed_everything, set_threads
    from amc.strategy.task import build_task
    from amc.training.distributed import pick_device

    rows = [json.loads(line) for line in (OUT / f"budget_{budget}" / "evaluator_scores.jsonl").open()]
    channels = [row["channels"] for row in rows[:count]]
    cfg = settings(budget, threads)
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
        print(f"flops {budget}: {name:16} {seconds[name]:7.2f} s", flush=True)
    dtype = str(eval_dtype(cfg.eval_precision, device)).removeprefix("torch.")
    return {
        "seconds": seconds, "strategies": len(channels), "threads": cfg.threads, "dtype": dtype,
        "cpu": cpu_description(), "date": date.today().isoformat(),
    }  # fmt: skip


def report(measured: dict[str, dict]) -> str:
    """Each budget's medians and their ratio to lsq's, one pair of columns per budget, then how each was timed."""
    budgets = sorted(measured, key=float)
    header = ["evaluator"] + [f"{h} at flops {b}" for b in budgets for h in ("seconds per strategy", "× lsq's")]
    rows = []
    for name in EVALUATORS:
        cells = [name]
        for b in budgets:
            seconds = measured[b]["seconds"]
            cells += [f"{seconds[name]:.2f}", f"{seconds[name] / seconds['lsq']:.2f}"] if name in seconds else ["—"] * 2
        rows.append(cells)
    notes = [
        f"Flops {b}: the median over the first {m['strategies']} strategies of the predictiveness sample, each "
        f"evaluator timed alone after a warm-up, {m['threads']} thread(s), scored in {m['dtype']} on all 5,000 "
        f"search-val images; {m['cpu']}, {m['date']}. Command: {m['command']}"
        for b, m in ((b, measured[b]) for b in budgets)
    ]
    return "\n".join([*markdown_table(header, rows), "", *notes]) + "\n"


def main(argv: list[str]) -> None:
    options = parse_options(
        argv,
        {"budgets": fractions, "strategies": positive_int, "threads": positive_int},
        {"budgets": ["0.1"], "strategies": 5, "threads": 1},
        "python experiments/evaluator_seconds.py [budgets=0.1] [strategies=5] [threads=1]",
    )
    for budget in options["budgets"]:
        if not (OUT / f"budget_{budget}" / "evaluator_scores.jsonl").is_file():
            fail(f"budgets={budget}: the predictiveness study has no sample there yet (experiments/predictiveness.py)")
    measured = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    for budget in options["budgets"]:
        result = time_budget(budget, options["strategies"], options["threads"])
        command = f"python experiments/evaluator_seconds.py budgets={budget} strategies={options['strategies']}"
        measured[budget] = result | {"command": f"{command} threads={options['threads']}"}
        write_json_atomic(RESULTS, measured)
        write_text_atomic(REPORT / "evaluator_seconds.md", report(measured))
    print(report(measured))


if __name__ == "__main__":
    main(sys.argv[1:])
