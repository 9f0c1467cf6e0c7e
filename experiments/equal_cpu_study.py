"""The search study at equal CPU seconds: does a method, or an evaluator, pay once every method gets the same cost?

FMNIST-MBV1 from the strong base amc ships, flops 0.1 (``budgets=``), seeds 2018-2020. Each method searches until its
evaluations have used ``cpu=`` CPU seconds of its one-thread search process (``search_cpu_s``; uniform scores its one
strategy, and sensitivity, given every threshold's strategy as a candidate, stops when it has scored them), with
today's search defaults (scoring screened on 1,000 search-val images, the best 10 rescored on all) and
conf/experiment/fmnist_study.yaml's fine-tuning of the exported best (1 epoch of KD from the base, the first study's
schedule). Methods: uniform, sensitivity and DDPG with the least-squares score (lsq), the same two with the best new
evaluator of the predictiveness study at that budget (lsq+kl at 0.1, lsq+kd20 at 0.25), and the multi-fidelity
hyperband. Runs go one after another, seed by seed, so a partial study holds whole seeds; launched again, it
skips finished runs and resumes a killed one. Each finished run's small files (config, episodes, probes, strategy with
its fine-tuned test top-1, promotion, log; no weights) are copied to experiments/equal_cpu_study/runs/, which is
committed, and the leaderboard there is written from them (``python -m amc.leaderboard
experiments/equal_cpu_study/runs output=experiments/equal_cpu_study`` rebuilds it from a fresh clone).

    python experiments/equal_cpu_study.py [budgets=0.1] [seeds=2018,2019,2020] [cpu=90] [threads=1]
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from script_options import fail, fractions, parse_options, positive_float, positive_int

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from amc.errors import NoStrategyError  # noqa: E402  (ROOT first)

BASE = ROOT / "models" / "weights" / "fmnist_mobilenet_v1.pt"  # amc.models.pretrained
WORK = ROOT / "runs" / "equal_cpu_study"  # full run dirs (weights included), ignored
BOARD = ROOT / "experiments" / "equal_cpu_study"
ARCHIVE = BOARD / "runs"  # the small files, committed
NO_STRATEGY = NoStrategyError.exit_code  # the search spent its CPU seconds before it had a strategy
DID_NOT_FIT = "did_not_fit.txt"  # a method that spent its CPU seconds before it had a strategy: why, in one line
KEPT = ("strategy.json", "config.yaml", "episodes.jsonl", "probes.jsonl", "promotion.jsonl", "search.log", DID_NOT_FIT)
# per budget, the predictiveness study's best new evaluator within 5x lsq's seconds per strategy (its report,
# experiments/predictiveness/predictiveness_clip2.md): at 0.1 none beats lsq and lsq+kl ties it at 1.0x; at 0.25
# 20 steps of KD after the refit ranks best (3.4x)
BEST_EVALUATOR = {"0.1": ("lsq+kl", []), "0.25": ("lsq+kd20", ["score=lsq+kd", "kd_steps=20"])}


def methods(budget: str) -> dict[str, list[str]]:
    """Method name -> the search's overrides at ``budget``: uniform, sensitivity and DDPG with lsq, the same two with
    the budget's best new evaluator (lsq+kl at a budget the predictiveness study did not measure), hyperband
    with its default rungs and with cheaper ones, and CMA-ES around the uniform allocation."""
    name, overrides = BEST_EVALUATOR.get(budget, BEST_EVALUATOR["0.1"])
    overrides = overrides or [f"score={name}"]
    return {
        "uniform": ["agent=uniform"],
        "sensitivity": ["agent=sensitivity", "agent.candidates=1000"],
        "ddpg": ["agent=ddpg"],
        f"sensitivity_{name}": ["agent=sensitivity", "agent.candidates=1000", *overrides],
        f"ddpg_{name}": ["agent=ddpg", *overrides],
        "hyperband": ["agent=hyperband"],
        # cheaper rungs: 200 KD steps ranked no better than 20 at 0.1 or 0.25 (predictiveness_clip2.md)
        "hyperband_0-20-60": ["agent=hyperband", "agent.options.rungs=[0,20,60]"],
        # near uniform: after fine-tuning uniform beats 35 of 40 random strategies at 0.1, the closer ones (headroom)
        "cmaes_around_uniform": ["agent=optuna", "agent.sampler=cmaes", "agent.options.start=uniform"],
    }


def names(text: str) -> list[str]:
    """Method names of the study (``methods(budget)``'s keys at any budget: the evaluator-named ones differ)."""
    known = {name for budget in (*BEST_EVALUATOR, "0.5") for name in methods(budget)}
    asked = text.split(",")
    if unknown := [name for name in asked if name not in known]:
        raise ValueError(f"unknown method {', '.join(unknown)}; the study's: {', '.join(sorted(known))}")
    return asked


def seeds(text: str) -> list[int]:
    return [positive_int(s) for s in text.split(",")]


def run_dir_of(budget: str, method: str, seed: int) -> Path:
    return WORK / f"budget_{budget}" / method / f"seed_{seed}"


def finished(run_dir: Path) -> bool:
    """The search in ``run_dir`` exported its network, or spent its CPU seconds before it had one."""
    return (run_dir / "pruned.pt").is_file() or (run_dir / DID_NOT_FIT).is_file()


def search(budget: str, method: str, seed: int, cpu: float, threads: int) -> Path:
    """The run dir of one finished search (run, or resumed after a kill: fmnist_study continues its run dir), or of
    one that spent its CPU seconds before it had a strategy to export (``did_not_fit.txt`` says so, and a relaunch
    does not try it again)."""
    run_dir = run_dir_of(budget, method, seed)
    if not finished(run_dir):
        args = [
            "-m", "amc.search", "experiment=fmnist_study", f"checkpoint={BASE}", f"flops_budget={budget}",
            *methods(budget)[method], f"seed={seed}", f"threads={threads}", "episodes=100000", f"search_cpu_s={cpu:g}",
            "screen_images=1000", f"hydra.run.dir={run_dir}",
        ]  # fmt: skip
        print("+ python " + " ".join(args), flush=True)
        status = subprocess.call([sys.executable, *args], cwd=ROOT)
        if status == NO_STRATEGY:
            reason = (run_dir / "search.log").read_text().strip().splitlines()[-1].partition("error: ")[2]
            (run_dir / DID_NOT_FIT).write_text(reason + "\n")
            print(f"{method} at flops {budget}, seed {seed}, did not fit in {cpu:g} CPU s: {reason}", flush=True)
        elif status != 0:
            fail(f"the search in {run_dir} failed: its search.log says why; run this script again to resume it")
    return run_dir


def archive(run_dir: Path) -> None:
    """The run's small files, under experiments/equal_cpu_study/runs/ at the same relative path."""
    kept = ARCHIVE / run_dir.relative_to(WORK)
    kept.mkdir(parents=True, exist_ok=True)
    for name in KEPT:
        if (run_dir / name).is_file():
            shutil.copy2(run_dir / name, kept / name)


def leaderboard() -> None:
    command = [sys.executable, "-m", "amc.leaderboard", str(ARCHIVE), f"output={BOARD}"]
    subprocess.run(command, cwd=ROOT, check=True)


def main(argv: list[str]) -> None:
    options = parse_options(
        argv,
        {"budgets": fractions, "seeds": seeds, "cpu": positive_float, "threads": positive_int, "methods": names},
        {"budgets": ["0.1"], "seeds": [2018, 2019, 2020], "cpu": 90.0, "threads": 1, "methods": None},
        "python experiments/equal_cpu_study.py [budgets=0.1] [seeds=2018,2019,2020] [cpu=90] [threads=1] "
        "[methods=NAME,...]",
    )
    for budget in options["budgets"]:  # an evaluator-named method exists at its own budget only
        if missing := [m for m in options["methods"] or [] if m not in methods(budget)]:
            fail(f"methods={','.join(missing)}: not run at flops {budget}; there: {', '.join(methods(budget))}")
    if not BASE.is_file():
        fail(f"the strong base is missing: python experiments/search_study.py trains it ({BASE})")
    for seed in options["seeds"]:
        for budget in options["budgets"]:
            for method in options["methods"] or methods(budget):
                # a relaunch rebuilds the leaderboard only after a search it ran
                if not finished(run_dir_of(budget, method, seed)):
                    archive(search(budget, method, seed, options["cpu"], options["threads"]))
                    leaderboard()


if __name__ == "__main__":
    main(sys.argv[1:])
