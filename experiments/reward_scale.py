"""Does DDPG search worse when its reward is 100x smaller, as it is for a library caller's metric in [0, 1]?

AMC's reward is 0.01 x the search metric. With top-1 in percent (the command line) a point of accuracy moves the
reward by 0.01; with ``amc.compress(evaluate=...)`` returning a fraction, by 0.0001. This runs the same DDPG search
on the digits smoke task (MobileNetV1-tiny, flops 0.3) with the reward as it is and scaled by 0.01, for each seed,
and compares the best search-val top-1 found and the mean of the last quarter of episodes (the learned policy, its
exploration noise decayed). Writes experiments/reward_scale.md.

    python experiments/reward_scale.py [seeds=5] [episodes=100] [threads=1]
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
from datetime import date
from pathlib import Path

from script_options import parse_options, positive_int

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from amc.io import write_text_atomic  # noqa: E402  (ROOT first)

REPORT = ROOT / "experiments" / "reward_scale.md"
SCALES = {"as the CLI (top-1 in %)": 1.0, "as a metric in [0, 1]": 0.01}


def settings(seed: int, episodes: int, threads: int, cache: Path):
    from hydra import compose, initialize_config_dir

    from amc.config import settings_of

    overrides = [
        "experiment=smoke", "agent=ddpg", f"episodes={episodes}", f"agent.warmup_episodes={episodes // 4}",
        "flops_budget=0.3", f"seed={seed}", f"threads={threads}", f"cache_dir={cache}", "promote.top_k=0",
        "export_candidates=1",
    ]  # fmt: skip
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return settings_of(compose("search", overrides=overrides))


def searched(cfg, scale: float, folder: Path) -> list[float]:
    """Each episode's search-val top-1 of one DDPG search whose reward is scaled by ``scale``."""
    import amc.envs.channel_pruning as env_module
    from amc.strategy.loop import search

    folder.mkdir(parents=True)
    original = env_module.reward_of
    env_module.reward_of = lambda kind, accuracy, macs, params: scale * original(kind, accuracy, macs, params)
    try:
        search(cfg, folder)
    finally:
        env_module.reward_of = original
    return [json.loads(line)["accuracy"] for line in (folder / "episodes.jsonl").read_text().splitlines()]


def main(argv: list[str]) -> None:
    options = parse_options(
        argv,
        {"seeds": positive_int, "episodes": positive_int, "threads": positive_int},
        {"seeds": 5, "episodes": 100, "threads": 1},
        "python experiments/reward_scale.py [seeds=5] [episodes=100] [threads=1]",
    )
    from amc.reporting.leaderboard import mean_ci, paired_difference_ci
    from amc.runtime.hardware import cpu_description

    def cell(values: list[float]) -> str:
        mean, half = mean_ci(values)
        return f"{mean:.2f} ± {half:.2f}"

    def paired(a: list[float], b: list[float]) -> str:
        mean, half, _ = paired_difference_ci(dict(enumerate(a)), dict(enumerate(b)))
        return f"{mean:+.2f} ± {half:.2f}"

    cache = ROOT / "runs" / "reward_scale_cache"  # the digits base, trained once
    best: dict[str, list[float]] = {name: [] for name in SCALES}
    late: dict[str, list[float]] = {name: [] for name in SCALES}
    for seed in range(options["seeds"]):
        for name, scale in SCALES.items():
            with tempfile.TemporaryDirectory() as folder:
                cfg = settings(seed, options["episodes"], options["threads"], cache)
                accuracy = searched(cfg, scale, Path(folder) / "run")
            best[name].append(max(accuracy))
            late[name].append(statistics.fmean(accuracy[-len(accuracy) // 4 :]))
            print(f"seed {seed}, reward {name}: best {best[name][-1]:.2f} %, last quarter {late[name][-1]:.2f} %")
    full, small = SCALES
    lines = [
        "| reward | best search-val top-1 (%) | mean of the last quarter of episodes (%) |",
        "|---|---|---|",
        *(f"| {n} | {cell(best[n])} | {cell(late[n])} |" for n in SCALES),
        f"| difference, paired | {paired(best[full], best[small])} | {paired(late[full], late[small])} |",
        "",
        f"DDPG on the digits smoke task (MobileNetV1-tiny, flops 0.3), {options['episodes']} episodes "
        f"({options['episodes'] // 4} random warm-up), seeds 0-{options['seeds'] - 1}; mean ± half-width of the 95 % "
        f"interval (Student's t); difference: as the CLI minus as a metric in [0, 1], paired by seed. "
        f"{cpu_description()}, {options['threads']} thread(s), {date.today().isoformat()}. "
        f"Command: python experiments/reward_scale.py " + " ".join(argv),
    ]
    write_text_atomic(REPORT, "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
