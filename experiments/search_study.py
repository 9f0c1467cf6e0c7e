"""The search study: which search method finds the best allocation, judged after fine-tuning, with seeds and CIs.

FMNIST-MBV1 from the strong base (>= 93.5 % test; rebuilt with one `amc.train` command when missing), flops
budgets 0.1 and 0.25 (3 seeds) and 0.5 (2 seeds), methods ddpg, td3, sensitivity, optuna (TPE), random and
uniform, each with the same evaluations (conf/experiment/fmnist_study.yaml). Every job is a Hydra multirun job
(joblib here, submitit on a cluster) in OUT/budget_B/METHOD/seed_S; launched again, each job continues its own
run dir (on_existing=continue), so the script resumes after a kill. The leaderboard is written as it fills.

    python experiments/search_study.py                         # everything, 2 jobs at a time, 1 thread each
    python experiments/search_study.py launcher=submitit_slurm # one SLURM job per search (set its partition etc.)
    python experiments/search_study.py only=leaderboard        # just the table and plot of what has finished
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "runs" / "study"
BASE = ROOT / "runs" / "strong" / "base" / "best.pt"
BOARD = ROOT / "experiments" / "search_study"
METHODS = "uniform,sensitivity,random,optuna,ddpg,td3"
# (budgets, seeds): the goal is decided at 0.25 and 0.1, so they come first and get the third seed
SWEEPS = [("0.25,0.1", "2018,2019"), ("0.5", "2018,2019"), ("0.25,0.1", "2020")]
BASE_COMMAND = [
    "-m", "amc.train", "model=mobilenet_v1", "data=fashion_mnist", "train.epochs=24", "train.lr=0.1",
    "train.warmup_epochs=0.5", "train.weight_decay=5e-5", "logger=none", "seed=0",
]  # fmt: skip


def run(args: list[str]) -> int:
    print("+ python " + " ".join(args), flush=True)
    return subprocess.call([sys.executable, *args], cwd=ROOT)


def ensure_base() -> None:
    """The strong base: trained once (about 80 min on 2 cores), resumed if a run was killed."""
    if BASE.is_file() and (BASE.parent / "summary.json").is_file():
        return
    run_dir = BASE.parent
    resume = [f"resume={run_dir}"] if (run_dir / "config.yaml").is_file() else []
    if run([*BASE_COMMAND, f"hydra.run.dir={run_dir}", *resume]) != 0:
        sys.exit("the base model did not train; see its log in " + str(run_dir))


def sweep(budgets: str, seeds: str, launcher: str, jobs: int) -> None:
    launch = [f"hydra/launcher={launcher}"]
    if launcher == "joblib":
        launch.append(f"hydra.launcher.n_jobs={jobs}")
    run(
        [
            "-m",
            "amc.search",
            "-m",
            "experiment=fmnist_study",
            f"checkpoint={BASE}",
            f"seed={seeds}",
            f"flops_budget={budgets}",
            f"agent={METHODS}",
            *launch,
            f"hydra.sweep.dir={OUT}",
            "hydra.sweep.subdir=budget_${flops_budget}/${agent.name}/seed_${seed}",
        ]
    )  # fmt: skip  (a job stopped by a bad input is listed in OUT/failed_jobs.txt; the others go on)


def main(argv: list[str]) -> None:
    options = dict(arg.split("=", 1) for arg in argv)
    only = options.get("only", "all")
    if only in ("all", "study"):
        ensure_base()
        for budgets, seeds in SWEEPS:
            sweep(budgets, seeds, options.get("launcher", "joblib"), int(options.get("jobs", 2)))
    run(["-m", "amc.leaderboard", str(OUT), f"output={BOARD}"])


if __name__ == "__main__":
    main(sys.argv[1:])
