"""How well does each cheap score predict the accuracy after fine-tuning? Rank correlations with bootstrap CIs.

At each flops budget on FMNIST-MBV1 from the strong base:
  1. a random search (60 episodes, score=lsq, seed 7) proposes feasible strategies;
  2. STRATEGIES of them (default 40), evenly spread over the range of its scores, are kept, in a seeded order;
  3. in that order, a chunk at a time, each is scored by every evaluator (EVALUATORS: plain, lsq, adabn,
     lsq+adabn, the teacher agreements kl and lsq+kl, and lsq+kd after 20, 60 and 200 steps of distillation, with
     and without adabn), with the seconds each takes, and then fine-tuned with one fixed short KD schedule (EPOCHS
     of an epoch, teacher = the base, no augmentation; amc.strategy.promotion) and its test top-1 measured;
  4. Spearman's rho and Kendall's tau between every evaluator's score and the fine-tuned test top-1, each with a
     bootstrap 95 % CI over the strategies done so far, go to experiments/predictiveness/<name>.md (and .json)
     after every chunk, so a partial run reports a fair sample.
Every step resumes after a kill (rerun the same command). The small files of every run (scores, fine-tuning
results and metrics; no weights) are kept under experiments/predictiveness/runs/ for the repository.
clip=NORM fine-tunes with gradients clipped at NORM (budget_B/clipNORM/, report predictiveness_clipNORM.md).
retest=SEED fine-tunes the strategies done so far once more, with fine-tuning seed SEED (budget_B/clipNORM/seedSEED/,
report predictiveness_clipNORM_retest.md): how well one fine-tuning ranks them against another is the ceiling of
any evaluator's rho against one, and the evaluators are ranked again against the mean of the two.

    python experiments/predictiveness.py [budgets=0.1,0.25] [strategies=40] [epochs=0.5] [threads=1] [clip=2]
        [retest=SEED]
"""

from __future__ import annotations

import dataclasses
import json
import math
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
from script_options import fail, fractions, parse_options, positive_float, positive_int

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from amc.io import append_jsonl, write_json_atomic, write_text_atomic  # noqa: E402  (ROOT first)

REPORT = ROOT / "experiments" / "predictiveness"
OUT = REPORT / "runs"  # tracked: .gitignore keeps the weights out
BASE = ROOT / "models" / "weights" / "fmnist_mobilenet_v1.pt"  # the shipped strong base
# name -> (amc.strategy.scoring's score, its kd_steps): the kd evaluators at three step counts
EVALUATORS = {
    "plain": ("plain", 0),
    "lsq": ("lsq", 0),
    "adabn": ("adabn", 0),
    "lsq+adabn": ("lsq+adabn", 0),
    "kl": ("kl", 0),
    "lsq+kl": ("lsq+kl", 0),
    "lsq+kd20": ("lsq+kd", 20),
    "lsq+kd60": ("lsq+kd", 60),
    "lsq+kd200": ("lsq+kd", 200),
    "lsq+kd60+adabn": ("lsq+kd+adabn", 60),
    "lsq+kd60+kl": ("lsq+kd+kl", 60),
}
MOST_KD_STEPS = max(steps for _, steps in EVALUATORS.values())
DEFAULT = "lsq"  # the search's evaluator today (amc.settings.SearchConfig.score)
SEARCH_EPISODES = 60
CHUNK = 4  # strategies scored, then fine-tuned, before the report is written again


def random_search(budget: str, threads: int) -> Path:
    run_dir = OUT / f"budget_{budget}" / "search"
    if not (run_dir / "pruned.pt").is_file():
        args = [
            "-m", "amc.search", "experiment=fmnist_study", f"checkpoint={BASE}", f"flops_budget={budget}",
            "agent=random", f"episodes={SEARCH_EPISODES}", "promote.top_k=0", "seed=7", f"threads={threads}",
            f"hydra.run.dir={run_dir}",
        ]  # fmt: skip
        subprocess.run([sys.executable, *args], cwd=ROOT, check=True)
    return run_dir


def spread(rows: list[dict], count: int) -> list[dict]:
    """``count`` rows with distinct channels, evenly spaced in rank of their score (lowest and highest included)."""
    distinct = {tuple(r["channels"]): r for r in rows}
    ranked = sorted(distinct.values(), key=lambda r: r["accuracy"])
    if len(ranked) <= count:
        return ranked
    picks = np.linspace(0, len(ranked) - 1, count).round().astype(int)
    return [ranked[i] for i in sorted(set(picks.tolist()))]


def settings(budget: str, threads: int):
    from hydra import compose, initialize_config_dir

    from amc.config import settings_of

    overrides = [
        "experiment=fmnist_study",
        f"checkpoint={BASE}",
        f"flops_budget={budget}",
        "score=lsq+kd+adabn",  # every image set the evaluators need: calibration, recalibration, distillation
        f"kd_steps={MOST_KD_STEPS}",
        "prefix_cache_mb=0",
        f"threads={threads}",
        "promote.top_k=1",
    ]  # fmt: skip  (no prefix cache: the evaluators are switched on one scorer, which a cache would mix)
    with initialize_config_dir(str(ROOT / "conf"), version_base="1.3"):
        return settings_of(compose("search", overrides=overrides))


def score_all(scorer, candidates: list[dict], path: Path) -> list[dict]:
    """Every evaluator's search-val top-1 for each candidate, with the seconds it took (resumable per candidate)."""
    done = {r["episode"]: r for r in map(json.loads, path.read_text().splitlines())} if path.exists() else {}
    for row in candidates:
        if row["episode"] in done:
            continue
        result = {"episode": row["episode"], "channels": row["channels"]}
        for name, (score, steps) in EVALUATORS.items():
            scorer.use_score(score)
            scorer.settings = dataclasses.replace(scorer.settings, kd_steps=steps)
            t0 = time.perf_counter()
            result[name] = scorer.score(row["channels"]).accuracy
            result[f"{name}_s"] = time.perf_counter() - t0
        append_jsonl(path, result)
        done[row["episode"]] = result
    return [done[r["episode"]] for r in candidates]


def resampled(value_of, count: int, resamples: int = 2000) -> tuple[float, float, float]:
    """(estimate, 2.5 %, 97.5 %) of ``value_of(indices)``, resampling the ``count`` strategies with replacement;
    NaN throughout when the estimate is undefined (a score that is the same for every strategy ranks nothing)."""
    rng = np.random.default_rng(0)

    def quiet(idx: np.ndarray) -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a constant score, or a resample holding one distinct value: NaN
            return float(value_of(idx))

    estimate = quiet(np.arange(count))
    if math.isnan(estimate):
        return math.nan, math.nan, math.nan
    draws = [v for v in (quiet(rng.integers(0, count, count)) for _ in range(resamples)) if not math.isnan(v)]
    low, high = np.percentile(draws, [2.5, 97.5])
    return estimate, float(low), float(high)


def bootstrap_ci(x: np.ndarray, y: np.ndarray, statistic, resamples: int = 2000) -> tuple[float, float, float]:
    """(estimate, 2.5 %, 97.5 %) of a rank correlation over the strategies."""
    return resampled(lambda idx: statistic(x[idx], y[idx])[0], len(x), resamples)


def correlations(scores: list[dict], finetuned: dict[int, float]) -> dict[str, dict]:
    from scipy.stats import kendalltau, spearmanr

    truth = np.array([finetuned[r["episode"]] for r in scores])
    default = np.array([r[DEFAULT] for r in scores])
    table = {}
    for name in EVALUATORS:
        if any(name not in r for r in scores):
            continue  # an evaluator added after these strategies were scored
        x = np.array([r[name] for r in scores])
        table[name] = {
            "spearman": bootstrap_ci(x, truth, spearmanr),
            "kendall": bootstrap_ci(x, truth, kendalltau),
            "spearman_minus_default": difference_ci(x, default, truth, spearmanr),
            "seconds": statistics.median(r[f"{name}_s"] for r in scores),
        }
    return table


def difference_ci(
    x: np.ndarray, default: np.ndarray, y: np.ndarray, statistic, resamples: int = 2000
) -> tuple[float, float, float]:
    """(estimate, 2.5 %, 97.5 %) of statistic(x, y) - statistic(default, y), both on the same resampled strategies:
    whether one evaluator ranks better than the default, not merely whether their intervals overlap."""
    return resampled(lambda idx: statistic(x[idx], y[idx])[0] - statistic(default[idx], y[idx])[0], len(x), resamples)


class FineTuning:
    """A budget's scorer and its one fixed fine-tuning schedule: what the study and its retest share."""

    def __init__(self, budget: str, epochs: float, threads: int, clip: float | None) -> None:
        from amc.runtime.process import seed_everything, set_threads
        from amc.strategy.best import teacher_logits_path
        from amc.strategy.task import build_task
        from amc.training.distributed import pick_device

        self.cfg = cfg = settings(budget, threads)
        set_threads(cfg.threads)
        seed_everything(cfg.seed)
        self.device = pick_device(cfg.device)
        self.task = build_task(cfg, self.device)
        self.work = OUT / f"budget_{budget}"
        self.schedule = dataclasses.replace(cfg.promote, epochs=epochs)
        self.folder = self.work  # where the fine-tuning results go (its seed is the search's)
        if clip is not None:  # another schedule: its own folder, the same strategies and evaluator scores
            train = dataclasses.replace(self.schedule.train, grad_clip_norm=clip)
            self.schedule = dataclasses.replace(self.schedule, train=train)
            self.folder = self.work / f"clip{clip:g}"
        self.logits = teacher_logits_path(cfg, self.task)

    def run(self, strategies: list[dict], folder: Path, seed: int) -> list[dict]:
        """Each strategy's network as the search exports it (lsq refit, closed loop), fine-tuned with ``seed``
        into ``folder``: promotion rows, resumable."""
        from amc.strategy.best import export_network
        from amc.strategy.promotion import promote

        folder.mkdir(parents=True, exist_ok=True)
        scorer = self.task.scorer
        scorer.use_score("lsq")
        metadata = {"data": self.cfg.data.name, "image_size": self.task.data.image_size, "base_checkpoint": str(BASE)}
        build = lambda channels: export_network(scorer, channels, True, scorer.calibration_images)  # noqa: E731
        promotion = promote(
            self.schedule, folder, self.task, strategies, build, self.device, seed, metadata, self.logits
        )
        return promotion["candidates"]


def study_budget(budget: str, count: int, epochs: float, threads: int, clip: float | None, on_progress) -> dict:
    """Score and fine-tune ``count`` strategies at ``budget``, a chunk at a time; ``on_progress(result)`` after each
    chunk with the correlations over the strategies done so far."""
    from amc.strategy.promotion import RESULTS as PROMOTED

    search_dir = random_search(budget, threads)
    candidates = spread([json.loads(line) for line in (search_dir / "episodes.jsonl").open()], count)
    tuning = FineTuning(budget, epochs, threads, clip)
    # a seeded order, so the strategies a partial run has done are a fair sample of the score range
    order = [candidates[i] for i in np.random.default_rng(0).permutation(len(candidates))]
    finished = finished_before(tuning.work / "evaluator_scores.jsonl", tuning.folder / PROMOTED)
    for end in range(CHUNK, len(order) + CHUNK, CHUNK):
        done = order[: min(end, len(order))]
        if end < len(order) and all(r["episode"] in finished for r in order[: end + CHUNK]):
            continue  # a relaunch: report from the last finished chunk on, so the committed report never shrinks
        scores = score_all(tuning.task.scorer, done, tuning.work / "evaluator_scores.jsonl")
        promoted = tuning.run(done, tuning.folder, tuning.cfg.seed)
        finetuned = {r["episode"]: r["finetuned_test_top1"] for r in promoted}
        diverged = diverged_finetunings(promoted)
        result = {
            "budget": float(budget),
            "strategies": len(scores),
            "of": len(candidates),
            "epochs": epochs,
            "lr": tuning.schedule.train.lr,
            "grad_clip_norm": clip,
            "finetuned_test_top1": [finetuned[r["episode"]] for r in scores],
            "diverged_episodes": sorted(diverged),
            "correlations": correlations(scores, finetuned),
            "correlations_without_diverged": correlations(
                [r for r in scores if r["episode"] not in diverged], finetuned
            ),
        }
        on_progress(result)
    return result


def retest_budget(budget: str, seed: int, epochs: float, threads: int, clip: float | None, on_progress) -> dict:
    """The study's strategies at ``budget`` fine-tuned again, with fine-tuning seed ``seed``, a chunk at a time:
    how well one fine-tuning ranks them against another (the ceiling of any evaluator's rho against one), and each
    evaluator's rho against the mean of the two. ``on_progress(result)`` after each chunk."""
    from scipy.stats import spearmanr

    from amc.io import read_jsonl
    from amc.strategy.promotion import RESULTS as PROMOTED

    tuning = FineTuning(budget, epochs, threads, clip)
    first = (
        {r["episode"]: r for r in read_jsonl(tuning.folder / PROMOTED)} if (tuning.folder / PROMOTED).exists() else {}
    )
    scores = [r for r in read_jsonl(tuning.work / "evaluator_scores.jsonl") if r["episode"] in first]
    if not scores:
        fail(f"flops {budget}: no strategy was scored and fine-tuned yet; run the study first")
    folder = tuning.folder / f"seed{seed}"
    finished = {r["episode"] for r in read_jsonl(folder / PROMOTED)} if (folder / PROMOTED).exists() else set()
    result = {}
    for end in range(CHUNK, len(scores) + CHUNK, CHUNK):
        done = scores[: min(end, len(scores))]
        if end < len(scores) and all(r["episode"] in finished for r in scores[: end + CHUNK]):
            continue  # a relaunch: report from the last finished chunk on
        rows = [{**first[r["episode"]], "accuracy": first[r["episode"]]["search_score"]} for r in done]
        again = {r["episode"]: r["finetuned_test_top1"] for r in tuning.run(rows, folder, seed)}
        once = np.array([first[r["episode"]]["finetuned_test_top1"] for r in done])
        twice = np.array([again[r["episode"]] for r in done])
        result = {
            "budget": float(budget),
            "strategies": len(done),
            "seeds": [tuning.cfg.seed, seed],
            "epochs": epochs,
            "lr": tuning.schedule.train.lr,
            "grad_clip_norm": clip,
            "retest_spearman": bootstrap_ci(once, twice, spearmanr),
            "mean_abs_difference": float(np.mean(np.abs(once - twice))),
            "correlations_with_mean": correlations(
                done,
                {r["episode"]: (first[r["episode"]]["finetuned_test_top1"] + again[r["episode"]]) / 2 for r in done},
            ),
        }
        on_progress(result)
    return result


def finished_before(scores: Path, promoted: Path) -> set[int]:
    """Episodes both scored and fine-tuned by an earlier launch."""
    from amc.io import read_jsonl

    def episodes(path: Path) -> set[int]:
        return {r["episode"] for r in read_jsonl(path)} if path.exists() else set()

    return episodes(scores) & episodes(promoted)


def diverged_finetunings(promoted: list[dict]) -> set[int]:
    """Episodes whose fine-tuning diverged (amc.strategy.promotion.diverged): reported apart."""
    from amc.strategy.promotion import diverged

    return {r["episode"] for r in promoted if diverged(r)}


def _interval(value: tuple[float, float, float]) -> str:
    estimate, low, high = value
    if math.isnan(estimate):
        return "undefined (every strategy scored alike)"
    return f"{estimate:.2f} [{low:.2f}, {high:.2f}]"


def schedule_text(result: dict) -> str:
    clip = result.get("grad_clip_norm")
    return f"{result['epochs']:g} epoch at lr {result['lr']:g}" + (
        "" if clip is None else f", gradients clipped at {clip:g}"
    )


def markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table's lines."""
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def report(results: list[dict]) -> str:
    rows = []
    for res in results:
        diverged = len(res.get("diverged_episodes", []))
        tables = [("all", res["strategies"], res["correlations"])]
        if diverged:
            tables.append(("without diverged", res["strategies"] - diverged, res["correlations_without_diverged"]))
        for label, count, table in tables:
            for name, c in table.items():
                gap = "—" if name == DEFAULT else _interval(c["spearman_minus_default"])
                shown = f"{count}" if label == "all" else f"{count} ({diverged} diverged left out)"
                if res.get("of", res["strategies"]) > res["strategies"]:
                    shown += f" of {res['of']}"
                rho, tau = _interval(c["spearman"]), _interval(c["kendall"])
                rows.append([f"{res['budget']:g}", name, shown, rho, tau, gap, f"{c['seconds']:.2f}"])
    header = ["budget", "evaluator", "strategies", "Spearman ρ [95 % CI]", "Kendall τ [95 % CI]",
              "ρ − lsq's, paired [95 % CI]", "seconds per evaluation"]  # fmt: skip
    schedules = sorted({schedule_text(r) for r in results})
    return "\n".join(markdown_table(header, rows)) + (
        "\n\nScores are search-val top-1 (%) of the pruned network as each evaluator rebuilds it; the truth is test "
        f"top-1 after the fixed KD fine-tuning ({', '.join(schedules)}, the base as teacher). CIs: 2,000 bootstrap "
        "resamples of the strategies. Seconds: the median per strategy in this process (one thread), excluding the "
        "search's prefix cache. Diverged: a fine-tuning that ended more than a point below the cheap score it "
        "started from (search-val).\n"
    )


def retest_report(results: list[dict]) -> str:
    """The retest's two tables: one fine-tuning against another, then every evaluator against their mean."""
    retest = markdown_table(
        ["budget", "strategies", "fine-tuning seeds", "Spearman ρ, one fine-tuning against the other [95 % CI]",
         "mean \\|difference\\| (points of test top-1)"],
        [[f"{r['budget']:g}", f"{r['strategies']}", " and ".join(map(str, r["seeds"])), _interval(r["retest_spearman"]),
          f"{r['mean_abs_difference']:.2f}"] for r in results],
    )  # fmt: skip
    against_mean = markdown_table(
        ["budget", "evaluator", "Spearman ρ against the mean of both [95 % CI]", "ρ − lsq's, paired [95 % CI]"],
        [[f"{r['budget']:g}", name, _interval(c["spearman"]),
          "—" if name == DEFAULT else _interval(c["spearman_minus_default"])]
         for r in results for name, c in r["correlations_with_mean"].items()],
    )  # fmt: skip
    schedules = sorted({schedule_text(r) for r in results})
    return "\n".join([*retest, "", *against_mean]) + (
        "\n\nThe same strategies, the same KD fine-tuning "
        f"({', '.join(schedules)}, the base as teacher), two seeds (data order): how well one fine-tuning ranks "
        "the strategies against another bounds how well any evaluator can rank them against one. CIs: 2,000 "
        "bootstrap resamples of the strategies.\n"
    )


def main(argv: list[str]) -> None:
    options = parse_options(
        argv,
        {
            "budgets": fractions,
            "strategies": positive_int,
            "epochs": positive_float,
            "threads": positive_int,
            "clip": positive_float,
            "retest": positive_int,
        },
        {"budgets": ["0.1", "0.25"], "strategies": 40, "epochs": 0.5, "threads": 1, "clip": 2.0, "retest": None},
        "python experiments/predictiveness.py [budgets=0.1,0.25] [strategies=40] [epochs=0.5] [threads=1] [clip=2] "
        "[retest=SEED]",
    )
    if not BASE.is_file():
        fail(f"the strong base is missing: python experiments/search_study.py trains it ({BASE})")
    name = "predictiveness" if options["clip"] is None else f"predictiveness_clip{options['clip']:g}"
    retest = options["retest"]
    if retest is not None and retest == settings(options["budgets"][0], options["threads"]).seed:
        fail(f"retest={retest}: that is the study's own fine-tuning seed; give another")
    name += "" if retest is None else "_retest"
    describe = report if retest is None else retest_report
    results: dict[str, dict] = {}
    if (REPORT / f"{name}.json").is_file():  # budgets reported by an earlier invocation stay in the report
        results = {f"{r['budget']:g}": r for r in json.loads((REPORT / f"{name}.json").read_text())}

    def write(result: dict) -> None:
        results[f"{result['budget']:g}"] = result
        ordered = [results[k] for k in sorted(results, key=float)]
        write_json_atomic(REPORT / f"{name}.json", ordered)
        write_text_atomic(REPORT / f"{name}.md", describe(ordered))
        print(describe(ordered), flush=True)

    for budget in options["budgets"]:
        if retest is None:
            study_budget(budget, options["strategies"], options["epochs"], options["threads"], options["clip"], write)
        else:
            retest_budget(budget, retest, options["epochs"], options["threads"], options["clip"], write)


if __name__ == "__main__":
    main(sys.argv[1:])
