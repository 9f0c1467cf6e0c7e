"""How close is the latency table's prediction to the end-to-end measurement, across the networks a search visits?

On FMNIST-MBV1 (the benchmark's base; latency depends on the layer shapes only), this:
  1. measures the latency table as ``latency_budget=`` does (isolated layers, then uniform networks timed end to
     end as anchors: ``amc.strategy.latency.UNIFORM_ANCHORS``), in a cache of its own, so it is measured afresh;
  2. draws STRATEGIES random strategies (default 40) spread from the smallest network the wall allows to the base:
     a random overall keep ratio, each layer's ratio scattered around it, rounded onto the channel grid;
  3. times each end to end against the base (batch 1, alternating calls, fastest of each, in a process of its
     own: what the search's probes and the export check measure) and compares the ratio the table predicts,
     with all its anchors and with only the two ends (the model before this change).
Writes experiments/latency/prediction_<cpu>.json and .md. Run it with nothing else on the machine.

    python experiments/latency_prediction.py [strategies=40] [threads=2] [seed=0]
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path

import torch
from script_options import fail, parse_options, positive_int

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

BASE = ROOT.parent / "shared" / "benchmarks" / "fmnist_mbv1_base.pth"
REPORT = ROOT / "experiments" / "latency"


def settings(cache_dir: str, threads: int):
    from hydra import compose, initialize_config_dir

    from amc.config import settings_of

    overrides = [
        "experiment=fmnist_benchmark",
        f"checkpoint={BASE}",
        "latency_budget=0.6",
        f"threads={threads}",
        f"cache_dir={cache_dir}",
    ]
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return settings_of(compose("search", overrides=overrides))


def random_strategies(grids: list[list[int]], widths: list[int], count: int, seed: int) -> list[list[int]]:
    generator = torch.Generator().manual_seed(seed)
    strategies = []
    for _ in range(count):
        overall = 0.2 + 0.8 * float(torch.rand(1, generator=generator))
        channels = []
        for grid, width in zip(grids, widths, strict=True):
            ratio = overall * (0.6 + 0.8 * float(torch.rand(1, generator=generator)))
            channels.append(min(grid, key=lambda c: abs(c - ratio * width)))
        strategies.append(channels)
    return strategies


def summarise(rows: list[dict], key: str) -> dict[str, float]:
    misses = [abs(r[key] / r["measured"] - 1) for r in rows]
    return {
        "median": statistics.median(misses),
        "p90": sorted(misses)[int(0.9 * (len(misses) - 1))],
        "max": max(misses),
        "within_5pct": sum(m <= 0.05 for m in misses) / len(misses),
    }


def main(argv: list[str]) -> None:
    from amc.pruning.apply import prune_model
    from amc.runtime.hardware import cpu_description
    from amc.runtime.process import set_threads
    from amc.strategy.budget import allowed_counts
    from amc.strategy.latency import LatencyTable
    from amc.strategy.task import build_task
    from amc.training.distributed import pick_device

    options = parse_options(
        argv,
        {"strategies": positive_int, "threads": positive_int, "seed": int},
        {"strategies": 40, "threads": 2, "seed": 0},
        "python experiments/latency_prediction.py [strategies=40] [threads=2] [seed=0]",
    )
    count, threads, seed = options["strategies"], options["threads"], options["seed"]
    if not BASE.is_file():
        fail(f"the benchmark base is missing: {BASE}")
    with tempfile.TemporaryDirectory() as cache_dir:
        cfg = settings(cache_dir, threads)
        set_threads(cfg.threads)
        task = build_task(cfg, pick_device(cfg.device))
        table: LatencyTable = task.constraint.cost  # type: ignore[assignment]
        structure, timer = task.structure, task.latency_timer
        ends = LatencyTable(
            structure, table.full, table.out_factor, table.in_factor, [table.anchors[0], table.anchors[-1]]
        )
        base_ms = table(structure.widths)
        grids = [allowed_counts(w, cfg.channel_round, cfg.lower_bound) for w in structure.widths]
        rows = []
        for i, channels in enumerate(random_strategies(grids, structure.widths, count, seed)):
            net = prune_model(task.base, structure, channels, reconstruction="none")
            measured = timer.ratio(net)
            rows.append(
                {
                    "channels": channels,
                    "macs_ratio": structure.macs(channels) / structure.macs(structure.widths),
                    "measured": measured,
                    "predicted": table(channels) / base_ms,
                    "predicted_two_anchors": ends(channels) / ends(structure.widths),
                }
            )
            print(
                f"{i + 1}/{count}: MACs {rows[-1]['macs_ratio']:.3f}, latency measured {measured:.3f}, "
                f"predicted {rows[-1]['predicted']:.3f} (two anchors {rows[-1]['predicted_two_anchors']:.3f})",
                flush=True,
            )
        task.close()
    result = {
        "cpu": cpu_description(),
        "threads": threads,
        "anchors": len(table.anchors),
        "strategies": count,
        "uniform_anchors": summarise(rows, "predicted"),
        "two_anchors": summarise(rows, "predicted_two_anchors"),
        "rows": rows,
    }
    REPORT.mkdir(parents=True, exist_ok=True)
    stem = "prediction_" + ("bf16" if "BF16" in result["cpu"] else "avx2")
    (REPORT / f"{stem}.json").write_text(json.dumps(result, indent=2))
    lines = [
        f"CPU: {result['cpu']}; {threads} threads; {count} random strategies, MACs "
        f"{min(r['macs_ratio'] for r in rows):.2f}-{max(r['macs_ratio'] for r in rows):.2f} of the base; "
        "batch-1 latency ratio to the base, PyTorch eager.",
        "",
        "| latency model | median miss | 90th percentile | worst | within 5 % |",
        "|---|---|---|---|---|",
    ]
    for label, key in (
        (f"{len(table.anchors)} anchors (uniform networks)", "uniform_anchors"),
        ("2 anchors (ends)", "two_anchors"),
    ):
        s = result[key]
        lines.append(
            f"| {label} | {100 * s['median']:.1f} % | {100 * s['p90']:.1f} % | {100 * s['max']:.1f} % "
            f"| {100 * s['within_5pct']:.0f} % |"
        )
    (REPORT / f"{stem}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
