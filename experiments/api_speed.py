"""Is the Python API as fast per episode as the command line? The same search through both doors, timed alone.

FMNIST-MBV1 from the shipped base, flops 0.5, agent=random, the same seed, every episode on all 5,000 search-val
images (screen_images=null on the command line; the API is given all of search-val): the command line's
``python -m amc.search`` and ``amc.compress`` each in a fresh process, alternated ROUNDS times so that drift of the
machine's speed falls on both. Prints the median seconds per episode of each run, their ratio, and whether both
found the same strategy.

    python experiments/api_speed.py [episodes=40] [rounds=2] [out=/tmp/amc-api-speed]
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import textwrap
from pathlib import Path

from script_options import parse_options, positive_int

ROOT = Path(__file__).resolve().parents[1]

API = textwrap.dedent("""
    import sys
    import amc
    from amc.data import build_data, stack_dataset
    from amc.models.pretrained import shipped_base

    episodes, seed, run_dir = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    base = amc.load(shipped_base("mobilenet_v1", "fashion_mnist").path)
    data = build_data("fashion_mnist", augment=False)
    val = stack_dataset(data.search_val)
    calibration = stack_dataset(data.train, limit=5000)[0]
    amc.compress(base, val[0][:1], budget=amc.Budget(flops=0.5), data=val, calibration=calibration,
                 method="random", evaluations=episodes, seed=seed, run_dir=run_dir)
""")


def median_episode_s(run_dir: Path) -> float:
    rows = [json.loads(line) for line in (run_dir / "episodes.jsonl").read_text().splitlines()]
    return statistics.median(r["wall_s"] for r in rows[1:])  # the first pays for warm-up


def main(argv: list[str]) -> None:
    options = parse_options(
        argv, {"episodes": positive_int, "rounds": positive_int, "out": str},
        {"episodes": 40, "rounds": 2, "out": "/tmp/amc-api-speed"},
        "python experiments/api_speed.py [episodes=40] [rounds=2] [out=DIR]",
    )  # fmt: skip
    out, episodes, seed = Path(options["out"]), options["episodes"], 0
    cli_args = ["flops_budget=0.5", "agent=random", f"episodes={episodes}", f"seed={seed}", "logger=none",
                "screen_images=null"]  # fmt: skip
    medians: dict[str, list[float]] = {"cli": [], "api": []}
    strategies: dict[str, list] = {"cli": [], "api": []}
    for round_ in range(options["rounds"]):
        for door in ("cli", "api") if round_ % 2 == 0 else ("api", "cli"):
            run_dir = out / f"{door}_{round_}"
            if door == "cli":
                command = [sys.executable, "-m", "amc.search", *cli_args, f"hydra.run.dir={run_dir}"]
            else:
                command = [sys.executable, "-c", API, str(episodes), str(seed), str(run_dir)]
            subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
            medians[door].append(median_episode_s(run_dir))
            strategies[door].append(json.loads((run_dir / "strategy.json").read_text())["channels"])
            print(f"{door} round {round_ + 1}: median {medians[door][-1]:.3f} s per episode", flush=True)
    cli, api = statistics.median(medians["cli"]), statistics.median(medians["api"])
    same = all(s == strategies["cli"][0] for s in strategies["cli"] + strategies["api"])
    print(f"API / CLI seconds per episode: {api / cli:.3f} ({api:.3f} / {cli:.3f}); same strategy: {same}")


if __name__ == "__main__":
    main(sys.argv[1:])
