"""The search study: which search method finds the best allocation, judged after fine-tuning, with seeds and CIs.

FMNIST-MBV1 from the strong base amc ships (models/weights/, 93.63 % test; retrained with its one `amc.train`
command when the file is missing), flops
budgets 0.1 and 0.25 (3 seeds) and 0.5 (2 seeds), methods ddpg, td3, sensitivity, optuna (TPE), random and
uniform, each with the same evaluations (conf/experiment/fmnist_study.yaml). Each (budget, seed) is one Hydra
multirun (joblib here, submitit on a cluster) over the methods still missing, in OUT/budget_B/METHOD/seed_S;
launched again, a job continues its own run dir (on_existing=continue). Each finished run's small files
(strategy.json, config.yaml, episodes, probes, promotion, log) are archived under experiments/search_study/runs/,
which is committed: the study resumes from there on a fresh checkout, and the leaderboard is written from it. A run
fine-tuned with another schedule than conf/experiment/fmnist_study.yaml's keeps its search and is fine-tuned again;
what it ran before is set aside whole (superseded_lr<LR>/), never overwritten.

    python experiments/search_study.py                         # everything, 2 jobs at a time, 1 thread each
    python experiments/search_study.py launcher=submitit_slurm # one SLURM job per search (set its partition etc.)
    python experiments/search_study.py only=leaderboard        # just the table and plot of what has finished
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

from omegaconf import OmegaConf
from script_options import one_of, parse_options, positive_int

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "runs" / "study"
BASE = ROOT / "models" / "weights" / "fmnist_mobilenet_v1.pt"  # amc.models.pretrained
BASE_RUN = ROOT / "runs" / "strong" / "base"  # where it is retrained when missing
BOARD = ROOT / "experiments" / "search_study"
ARCHIVE = BOARD / "runs"
KEPT = ("strategy.json", "config.yaml", "episodes.jsonl", "probes.jsonl", "promotion.jsonl", "search.log")
METHODS = ("uniform", "sensitivity", "random", "optuna", "ddpg", "td3")
# (budget, seed) in the order they run: the goal is decided at 0.25 and 0.1, so they come first and get a third
# seed; 0.25 gets its three first, so one budget has a confidence interval as early as possible
PLAN = [
    ("0.25", 2018), ("0.1", 2018), ("0.25", 2019), ("0.25", 2020), ("0.1", 2019), ("0.1", 2020),
    ("0.5", 2018), ("0.5", 2019),
]  # fmt: skip
BASE_COMMAND = [
    "-m", "amc.train", "model=mobilenet_v1", "data=fashion_mnist", "train.epochs=24", "train.lr=0.1",
    "train.warmup_epochs=0.5", "train.weight_decay=5e-5", "logger=none", "seed=0",
]  # fmt: skip


def run(args: list[str]) -> int:
    print("+ python " + " ".join(args), flush=True)
    return subprocess.call([sys.executable, *args], cwd=ROOT)


def ensure_base() -> None:
    """The shipped strong base, retrained with its schedule when the file is missing (about 80 min on 2 cores;
    a killed training resumes)."""
    if BASE.is_file():
        return
    resume = [f"resume={BASE_RUN}"] if (BASE_RUN / "config.yaml").is_file() else []
    if run([*BASE_COMMAND, f"hydra.run.dir={BASE_RUN}", *resume]) != 0:
        sys.exit("the base model did not train; see its log in " + str(BASE_RUN))
    shutil.copyfile(BASE_RUN / "best.pt", BASE)


def run_dir(budget: str, method: str, seed: int, root: Path = OUT) -> Path:
    return root / f"budget_{budget}" / method / f"seed_{seed}"


def finished(folder: Path) -> bool:
    strategy = folder / "strategy.json"
    return strategy.is_file() and "finetuned_test_top1" in json.loads(strategy.read_text())


def archive() -> None:
    """Copy each finished run's small files into the committed archive."""
    for budget, seed in PLAN:
        for method in METHODS:
            source, kept = run_dir(budget, method, seed), run_dir(budget, method, seed, ARCHIVE)
            if finished(source) and not stale(source) and not finished(kept):
                kept.mkdir(parents=True, exist_ok=True)
                for name in KEPT:
                    if (source / name).is_file():
                        shutil.copyfile(source / name, kept / name)


def set_aside_stale_archive() -> None:
    """Archived runs fine-tuned with a schedule the study no longer uses move out of the leaderboard's reach, to
    ``experiments/search_study/superseded_lr<LR>/`` (kept, committed); their runs are fine-tuned again."""
    for config_path in sorted(ARCHIVE.glob("budget_*/*/seed_*/config.yaml")):
        kept = config_path.parent
        if stale(kept):
            lr = OmegaConf.load(config_path).promote.train.lr
            aside = BOARD / f"superseded_lr{lr:g}" / kept.relative_to(ARCHIVE)
            aside.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(kept, aside)


def stale(folder: Path) -> bool:
    """The run in ``folder`` was fine-tuned with another schedule than the study's now."""
    config = OmegaConf.load(folder / "config.yaml")
    return bool(schedule_changes(config))


def schedule_changes(config) -> dict:
    """The study's KD settings that a run's ``config`` does not have, with the study's values."""
    return {k: v for k, v in study_schedule().items() if OmegaConf.select(config, f"promote.train.{k}") != v}


def study_schedule() -> dict:
    """The promotion's KD schedule the study uses now (conf/experiment/fmnist_study.yaml)."""
    return OmegaConf.to_container(OmegaConf.load(ROOT / "conf" / "experiment" / "fmnist_study.yaml").promote.train)


def set_aside_stale_finetuning(root: Path = OUT) -> None:
    """A run whose config names another KD schedule than the study's now takes the study's: any fine-tuning it
    already ran (strategy.json, promotion results, the exported networks) is moved whole into
    ``superseded_lr<LR>/`` beside its config, and the next sweep resumes it, running only what the new schedule
    changes (its episodes are kept)."""
    for config_path in sorted(root.glob("budget_*/*/seed_*/config.yaml")):
        folder, config = config_path.parent, OmegaConf.load(config_path)
        changed = schedule_changes(config)
        if not changed:
            continue
        aside = folder / f"superseded_lr{config.promote.train.lr:g}"
        aside.mkdir(exist_ok=False)  # never over an earlier set-aside
        for name in ("strategy.json", "promotion.jsonl", "promotion", "finetuned.pt", "pruned.pt", "config.yaml"):
            if (folder / name).exists():
                (shutil.copy2 if name == "config.yaml" else shutil.move)(folder / name, aside / name)
        for key, value in changed.items():
            OmegaConf.update(config, f"promote.train.{key}", value)
        OmegaConf.save(config, config_path)
        print(f"{folder}: now fine-tuned with {changed}; what ran before is kept in {aside.name}/", flush=True)


def sweep(budget: str, seed: int, methods: list[str], launcher: str, jobs: int) -> None:
    """One multirun over ``methods`` at one budget and seed (a job a bad input stops is listed in
    OUT/failed_jobs.txt; the others go on)."""
    launch = [f"hydra/launcher={launcher}"]
    if launcher == "joblib":
        launch.append(f"hydra.launcher.n_jobs={jobs}")
    subdir = "hydra.sweep.subdir=budget_${flops_budget}/${agent.name}/seed_${seed}"
    common = ["-m", "amc.search", "-m", "experiment=fmnist_study", f"checkpoint={BASE}"]
    run([*common, f"seed={seed}", f"flops_budget={budget}", f"agent={','.join(methods)}", *launch,
         f"hydra.sweep.dir={OUT}", subdir])  # fmt: skip


def leaderboard() -> None:
    if any(ARCHIVE.rglob("strategy.json")):
        run(["-m", "amc.leaderboard", str(ARCHIVE), f"output={BOARD}"])


def main(argv: list[str]) -> None:
    options = parse_options(
        argv,
        {"only": one_of("all", "study", "leaderboard"), "launcher": str, "jobs": positive_int},
        {"only": "all", "launcher": "joblib", "jobs": 2},
        "python experiments/search_study.py [only=all|study|leaderboard] [launcher=joblib] [jobs=2]",
    )
    if options["only"] in ("all", "study"):
        ensure_base()
        set_aside_stale_finetuning()
        set_aside_stale_archive()
        archive()
        for budget, seed in PLAN:
            pending = [m for m in METHODS if not finished(run_dir(budget, m, seed, ARCHIVE))]
            if pending:
                sweep(budget, seed, pending, options["launcher"], options["jobs"])
                archive()
                leaderboard()
    leaderboard()


if __name__ == "__main__":
    main(sys.argv[1:])
