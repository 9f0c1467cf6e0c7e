"""``python -m amc [command] [key=value ...]``: runs ``python -m amc.<command>``, or lists the commands."""

from __future__ import annotations

import difflib
import runpy
import sys

COMMANDS = {
    "search": "search per-layer keep ratios under a FLOPs, params or latency budget (AMC's DDPG or agent=...)",
    "leaderboard": "compare finished searches: mean and 95 % CI per budget and method, best score per evaluation",
    "train": "train a base model (any registered, torchvision or custom network)",
    "profile": "per-layer MACs (FLOPs = 2 x MACs) and params of a model or checkpoint",
    "export": "prune by hand or replay a strategy.json: a physically smaller checkpoint",
    "finetune": "recover accuracy by knowledge distillation (or CE) from the base",
    "pipeline": "search (AMC + uniform), export, fine-tune, report",
    "deploy": "ONNX export, checked with onnxruntime, and end-to-end latency",
    "slim": "HW7: network slimming by BN gamma",
    "quantize": "HW7: 8/16-bit weights",
    "predict": "HW7: predictions CSV from a (quantized) checkpoint",
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = [
        "usage: python -m amc <command> [key=value ...]   (the same as python -m amc.<command>; --help lists keys)"
    ]
    lines += [f"  {name:<{width}}  {what}" for name, what in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        near = difflib.get_close_matches(command, list(COMMANDS), n=1)
        hint = f" (did you mean {near[0]}?)" if near else ""
        print(f"error: amc has no command {command!r}{hint}; commands: {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    sys.argv = [f"amc.{command}", *rest]  # Hydra reads the overrides from sys.argv
    runpy.run_module(f"amc.{command}", run_name="__main__", alter_sys=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
