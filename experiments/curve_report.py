"""The accuracy–MACs table and plot, and the latency table, from experiments/fmnist_mbv1_curve.sh's runs.

Usage: python experiments/curve_report.py runs/curve  (writes curve.md, curve.png and latency.json there)
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import torch

from amc.deployment.jobs import measure
from amc.models import load_checkpoint
from amc.plots import plot_accuracy_vs_macs

BASE = Path(__file__).resolve().parents[1].parent / "shared" / "benchmarks" / "fmnist_mbv1_base.pth"
METHODS = {"ddpg_s2018": "AMC (DDPG, seed 2018)", "ddpg_s2019": "AMC (DDPG, seed 2019)"}
METHODS |= {"random_s2018": "random search", "uniform": "uniform"}


def runs(out: Path) -> list[tuple[str, str, dict]]:
    found = []
    for budget_dir in sorted(p for p in out.iterdir() if p.is_dir()):
        for name in METHODS:
            path = budget_dir / name / "strategy.json"
            if path.is_file() and (budget_dir / name / "pruned.pt").is_file():
                found.append((budget_dir.name, name, json.loads(path.read_text())))
    return found


def accuracy_table(found: list[tuple[str, str, dict]]) -> str:
    lines = [
        "| flops budget | method | MACs / base | search-val top-1 (%) | test top-1 (%) |",
        "|---|---|---|---|---|",
    ]
    for budget, name, s in found:
        accuracies = f"{s['search_val_top1']:.2f} | {s['test_top1']:.2f}"
        lines.append(f"| {budget} | {METHODS[name]} | {s['macs_ratio']:.4f} | {accuracies} |")
    return "\n".join(lines)


def latency_rows(out: Path, found: list[tuple[str, str, dict]]) -> list[dict]:
    """Base, then every run's pruned.pt: PyTorch eager and onnxruntime at batch 1 and 256, 2 threads."""
    torch.set_num_threads(2)
    base = load_checkpoint(BASE, name="mobilenet_v1", num_classes=10, in_channels=1, small_input=True).eval()
    nets = [("base", "", base)] + [(b, n, load_checkpoint(out / b / n / "pruned.pt").eval()) for b, n, _ in found]
    rows = []
    for budget, name, net in nets:
        m = measure(net, out / f"latency_{budget}_{name or 'base'}.onnx", 28, (1, 256), threads=2, min_run_s=1.0)
        rows.append({"budget": budget, "method": METHODS.get(name, "base"), **m})
    return rows


def latency_table(rows: list[dict]) -> str:
    base = rows[0]

    def ms(row: dict, engine: str, batch: int) -> float:
        return next(r["median_ms"] for r in row["latency"] if r["engine"] == engine and r["batch"] == batch)

    cols = [(e, b) for b in (1, 256) for e in ("pytorch", "onnxruntime")]
    head = " | ".join(f"{e} b{b} (ratio)" for e, b in cols)
    lines = [f"| flops budget | method | MACs / base | {head} | max abs diff ONNX vs PyTorch |", "|---" * 8 + "|"]
    for row in rows:
        cells = " | ".join(f"{ms(row, e, b):.2f} ms ({ms(row, e, b) / ms(base, e, b):.3f})" for e, b in cols)
        lines.append(
            f"| {row['budget'] or '—'} | {row['method']} | {row['macs'] / base['macs']:.4f} | {cells} | "
            f"{row['max_abs_diff']:.1e} |"
        )
    return "\n".join(lines)


def main(out: Path) -> None:
    found = runs(out)
    table = accuracy_table(found)
    points = [(f"{METHODS[n]} @ {b}", s["macs"], s["test_top1"]) for b, n, s in found]
    base_top1 = statistics.mean(s["base_test_top1"] for *_, s in found)
    points.append(("base", found[0][2]["base_macs"], base_top1))
    plot_accuracy_vs_macs(points, out / "curve.png", "FMNIST-MBV1: test top-1 vs MACs (FLOPs = 2 x MACs)")
    rows = latency_rows(out, found)
    (out / "latency.json").write_text(json.dumps(rows, indent=2))
    report = f"{table}\n\nbase test top-1 {base_top1:.2f} %\n\n{latency_table(rows)}\n"
    (out / "curve.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "runs/curve"))
