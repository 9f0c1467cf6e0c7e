"""Print the HW7 table (markdown) from a finished ``run_standin.sh`` output folder (default runs/hw7)."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def best(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())["best"]


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/hw7")
    rows = ["| model | params | bytes | validation top-1 (%) |", "|---|---|---|---|"]
    from amc.models import load_checkpoint

    def params(path: Path) -> int:
        return sum(p.numel() for p in load_checkpoint(path).parameters())

    for label, run in (
        ("teacher: ResNet-18", "teacher"),
        ("student from scratch", "scratch"),
        ("student with KD (T = 20, α = 0.5)", "kd"),
    ):
        rows.append(f"| {label} | {params(out / run / 'best.pt'):,} | — | {best(out / run)['test_top1']:.2f} |")
    for r in json.loads((out / "slim" / "slimming.json").read_text()):
        rows.append(
            f"| slimming step {r['step']} (width {r['width_mult']}) | {r['params']:,} | — | "
            f"{r['test_top1']:.2f} (right after slimming {r['test_top1_after_slimming']:.2f}) |"
        )
    q = json.loads((out / "quantize" / "quantization.json").read_text())
    for name in ("fp32", "fp16", "uint8"):
        rows.append(
            f"| KD student, {name} file | {q['params']:,} | {q[name]['bytes']:,} | {q[name]['test_top1']:.2f} |"
        )
    if "int8_ptq" in q:
        p = q["int8_ptq"]
        rows.append(
            f"| KD student, torch int8 PTQ (CPU latency {p['fp32_latency_ms']:.2f} → {p['int8_latency_ms']:.2f} ms) "
            f"| {q['params']:,} | — | {p['test_top1']:.2f} |"
        )
    s = json.loads((out / "amc" / "strategy.json").read_text())
    a = json.loads((out / "amc_quantize" / "quantization.json").read_text())
    rows.append(
        f"| AMC-searched student (params budget {s['budget']}), before fine-tuning | {s['params']:,} | — | "
        f"{s['test_top1']:.2f} |"
    )
    rows.append(
        f"| AMC-searched student, fine-tuned with KD, uint8 file | {a['params']:,} | {a['uint8']['bytes']:,} | "
        f"{a['uint8']['test_top1']:.2f} |"
    )
    print("\n".join(rows))


if __name__ == "__main__":
    main()
