"""Search runs summarised per budget and method: mean ± 95 % CI over seeds, and best-so-far against evaluations.

A run is a folder holding a finished search (``strategy.json`` with its test top-1, ``episodes.jsonl`` and the
``config.yaml`` it ran with), wherever it sits: a single run dir, a Hydra multirun folder, a study's tree.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from amc.io import read_jsonl
from amc.settings import SearchConfig, field_default

if TYPE_CHECKING:
    from matplotlib.figure import Figure

BASELINE = "uniform"


@dataclass
class Run:
    path: Path
    base: str  # the network searched: runs from different bases are never averaged together
    constraint: str
    budget: float
    method: str
    seed: int
    search_val: float
    test_before: float
    test_after: float | None
    macs_ratio: float
    evaluations: int
    wall_s: float
    best_so_far: list[float] = field(default_factory=list)  # after each evaluation (NaN before the first episode)
    cpu_s: float | None = None  # the search process's CPU seconds over its evaluations (None: not recorded)
    cpu_budget: float | None = None  # the search_cpu_s it ran under


def method_label(cfg: dict[str, Any]) -> str:
    """``ddpg``, ``optuna-tpe``, ``random [adabn]``, ``ddpg [lsq+kd20]``, ``hyperband (rungs 0,20,60)``,
    ``optuna-cmaes (around uniform)``: the method, its sampler, a multi-fidelity search's rungs, a search's start
    point, and a non-default evaluator with its distillation steps (two step counts are two evaluators, two sets of
    rungs two methods)."""
    agent = cfg.get("agent") or {}
    label = str(agent.get("name", "?"))
    if agent.get("sampler") and label == "optuna":
        label += f"-{agent['sampler']}"
    options = agent.get("options") or {}
    if isinstance(options.get("rungs"), list):
        label += f" (rungs {','.join(str(r) for r in options['rungs'])})"
    if options.get("start"):
        label += f" (around {options['start']})"
    score = str(cfg.get("score") or "lsq")
    if "kd" in score.split("+"):
        score = score.replace("kd", f"kd{cfg.get('kd_steps', field_default(SearchConfig, 'kd_steps'))}")
    return label if score == "lsq" else f"{label} [{score}]"


def base_label(strategy: dict[str, Any], cfg: dict[str, Any]) -> str:
    """``mobilenet_v1 on fashion_mnist, base 93.63 % test top-1``: the model, the data and the base's test top-1
    (two bases of one model on one dataset differ there)."""
    model = strategy.get("model") or (cfg.get("model") or {}).get("name", "?")
    data = (cfg.get("data") or {}).get("name", "?")
    top1 = strategy.get("base_test_top1")
    return f"{model} on {data}" + ("" if top1 is None else f", base {float(top1):.2f} % test top-1")


def _mapping(path: Path, parse: Callable[[str], Any]) -> dict[str, Any]:
    """The file's contents when it parses to a mapping, else ``{}``: a user's folders may hold anything."""
    try:
        data = parse(path.read_text())
    except (OSError, ValueError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def kd_finetunes(folders: list[Path]) -> dict[Path, float]:
    """Test top-1 of every finished ``amc.finetune`` run with KD under ``folders``, keyed by the checkpoint it
    fine-tuned (resolved; a relative one from the current folder). The latest, where one was fine-tuned twice."""
    found: dict[Path, tuple[float, float]] = {}
    for folder in folders:
        for summary in folder.rglob("summary.json"):
            cfg, result = _mapping(summary.parent / "config.yaml", yaml.safe_load), _mapping(summary, json.loads)
            if (
                not isinstance(cfg.get("distill"), dict)
                or cfg["distill"].get("kind") != "kd"
                or not cfg.get("checkpoint")
            ):
                continue  # a base training, a fine-tuning without the teacher, or some other summary.json
            last = result.get("last") if isinstance(result.get("last"), dict) else {}
            if not isinstance(last.get("test_top1"), (int, float)):
                continue
            checkpoint, written = Path(cfg["checkpoint"]).expanduser().resolve(), summary.stat().st_mtime
            if checkpoint not in found or written > found[checkpoint][0]:
                found[checkpoint] = (written, float(last["test_top1"]))
    return {checkpoint: top1 for checkpoint, (_, top1) in found.items()}


def finetuned_top1(run_dir: Path, strategy: dict[str, Any], finetunes: dict[Path, float]) -> float | None:
    """Test top-1 after fine-tuning: the search's own promotion, else a KD ``amc.finetune`` run of its
    ``pruned.pt`` (in ``finetune/`` or anywhere the leaderboard was pointed at: a pipeline's ``amc_kd/``)."""
    if strategy.get("finetuned_test_top1") is not None:
        return float(strategy["finetuned_test_top1"])
    return finetunes.get((run_dir / "pruned.pt").resolve())


def read_run(run_dir: Path, finetunes: dict[Path, float]) -> Run | None:
    """The run in ``run_dir``, or ``None`` when it holds no finished search; ``finetunes``: :func:`kd_finetunes`."""
    strategy_path, config_path = run_dir / "strategy.json", run_dir / "config.yaml"
    if not (strategy_path.is_file() and config_path.is_file() and (run_dir / "episodes.jsonl").is_file()):
        return None
    strategy = _mapping(strategy_path, json.loads)
    if not all(key in strategy for key in ("test_top1", "budget", "accuracy", "macs_ratio")):
        return None  # still searching (strategy.json holds the best so far, untested), or not amc's file
    cfg = _mapping(config_path, yaml.safe_load)
    history = read_jsonl(run_dir / "episodes.jsonl")
    if (run_dir / "probes.jsonl").is_file():
        history += read_jsonl(run_dir / "probes.jsonl")
    history.sort(key=lambda r: r.get("evaluation", r.get("episode", 0)))
    best, curve = -math.inf, []
    for row in history:
        if "episode" in row:
            best = max(best, row["accuracy"])
        curve.append(best if best > -math.inf else math.nan)
    promotion = strategy.get("promotion") or {}
    return Run(
        path=run_dir,
        base=base_label(strategy, cfg),
        constraint=strategy.get("constraint", "flops"),
        budget=float(strategy["budget"]),
        method=method_label(cfg),
        seed=int(strategy.get("seed", cfg.get("seed", 0))),
        search_val=float(strategy["accuracy"]),
        test_before=float(strategy["test_top1"]),
        test_after=finetuned_top1(run_dir, strategy, finetunes),
        macs_ratio=float(strategy["macs_ratio"]),
        evaluations=len(history),
        wall_s=sum(r.get("wall_s", 0.0) for r in history) + float(promotion.get("cost_s", 0.0)),
        best_so_far=curve,
        cpu_s=sum(r["cpu_s"] for r in history) if history and all("cpu_s" in r for r in history) else None,
        cpu_budget=cfg.get("search_cpu_s"),
    )


def find_runs(folders: list[Path]) -> list[Run]:
    """Every finished search under ``folders`` (each run once, however the folders overlap)."""
    seen: set[Path] = set()
    runs = []
    finetunes = kd_finetunes(folders)
    for folder in folders:
        for strategy in sorted(folder.rglob("strategy.json")):
            run_dir = strategy.parent.resolve()
            if run_dir in seen:
                continue
            seen.add(run_dir)
            run = read_run(run_dir, finetunes)
            if run is not None:
                runs.append(run)
    return runs


def t_quantile(df: float) -> float:
    """The two-sided 95 % quantile of Student's t with ``df`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(0.975, df))


def mean_ci(values: list[float]) -> tuple[float, float]:
    """(mean, half-width of the 95 % confidence interval); the half-width is NaN for fewer than two values."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, math.nan
    return mean, t_quantile(len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))


def difference_ci(a: list[float], b: list[float]) -> tuple[float, float]:
    """Mean of ``a`` minus mean of ``b`` with Welch's 95 % interval (NaN where a side has one value, or
    where both sides have no spread at all)."""
    diff = statistics.fmean(a) - statistics.fmean(b)
    if len(a) < 2 or len(b) < 2:
        return diff, math.nan
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    if va + vb == 0:
        return diff, 0.0
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))
    return diff, t_quantile(df) * math.sqrt(va + vb)


def paired_difference_ci(a: dict[int, float], b: dict[int, float]) -> tuple[float, float, int]:
    """Mean over the seeds both sides ran of ``a[seed] − b[seed]``, the half-width of its 95 % interval (paired t;
    NaN below two shared seeds) and how many seeds it pairs. Runs of one seed share its calibration sample and
    fine-tuning order, so pairing removes what the seed moves in both."""
    diffs = [a[seed] - b[seed] for seed in sorted(a.keys() & b.keys())]
    if not diffs:
        return math.nan, math.nan, 0
    mean, half = mean_ci(diffs)
    return mean, half, len(diffs)


def _cell(values: list[float], digits: int = 2) -> str:
    if not values:
        return "—"
    mean, half = mean_ci(values)
    return f"{mean:.{digits}f}" if math.isnan(half) else f"{mean:.{digits}f} ± {half:.{digits}f}"


def table_rows(runs: list[Run]) -> list[dict[str, Any]]:
    """One row per (base, constraint, budget, method), sorted by base, budget, then mean test top-1 after
    fine-tuning."""
    groups: dict[tuple[str, str, float, str], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.base, run.constraint, run.budget, run.method), []).append(run)
    rows = []
    for (base, constraint, budget, method), members in groups.items():
        after = [r.test_after for r in members if r.test_after is not None]
        baseline_runs = [r for r in groups.get((base, constraint, budget, BASELINE), []) if r.test_after is not None]
        baseline = [r.test_after for r in baseline_runs]
        delta = difference_ci(after, baseline) if after and baseline and method != BASELINE else None
        by_seed = {r.seed: r.test_after for r in members if r.test_after is not None}
        baseline_by_seed = {r.seed: r.test_after for r in baseline_runs}
        paired = paired_difference_ci(by_seed, baseline_by_seed) if method != BASELINE else None
        rows.append(
            {
                "base": base,
                "constraint": constraint,
                "budget": budget,
                "method": method,
                "seeds": sorted(r.seed for r in members),
                "search_val": _cell([r.search_val for r in members]),
                "test_before": _cell([r.test_before for r in members]),
                "test_after": _cell(after) if after else "—",
                "after_mean": statistics.fmean(after) if after else -math.inf,
                "delta_uniform": "—" if delta is None else _delta(*delta),
                "paired_delta_uniform": "—" if paired is None or not paired[2] else _delta(*paired[:2]),
                "macs_ratio": _cell([r.macs_ratio for r in members], 4),
                "evaluations": _cell([float(r.evaluations) for r in members], 0),
                "wall_s": _cell([r.wall_s for r in members], 0),
                "cpu_s": _cell([r.cpu_s for r in members if r.cpu_s is not None], 0),
            }
        )
    return sorted(rows, key=lambda r: (r["base"], r["constraint"], r["budget"], -r["after_mean"], r["method"]))


def _delta(diff: float, half: float) -> str:
    if math.isnan(half):
        return f"{diff:+.2f}"
    verdict = " *" if abs(diff) > half else ""  # the interval excludes zero
    return f"{diff:+.2f} ± {half:.2f}{verdict}"


def repeated_seeds(runs: list[Run]) -> list[str]:
    """One line per group that ran a seed in more than one run dir. A search is reproducible from its seed, so such
    runs repeat one measurement, and counting them as independent would narrow the interval."""
    dirs: dict[tuple[str, str, float, str, int], list[Path]] = {}
    for run in runs:
        dirs.setdefault((run.base, run.constraint, run.budget, run.method, run.seed), []).append(run.path)
    return [
        f"{method} at {constraint} {budget:g} ({base}) ran seed {seed} in {len(paths)} run dirs: "
        f"{', '.join(map(str, paths))}; each counts as one run above"
        for (base, constraint, budget, method, seed), paths in dirs.items()
        if len(paths) > 1
    ]


def _line(row: dict[str, Any]) -> str:
    seeds = f"{len(row['seeds'])} ({', '.join(map(str, row['seeds']))})"
    cells = [f"{row['constraint']} {row['budget']:g}", row["method"], seeds]
    cells += [row[key] for key in ("search_val", "test_before", "test_after", "delta_uniform")]
    cells += [row[key] for key in ("paired_delta_uniform", "macs_ratio", "evaluations", "cpu_s", "wall_s")]
    return "| " + " | ".join(cells) + " |\n"


def markdown(runs: list[Run]) -> str:
    """A table per base network (a heading above each when the runs searched more than one), then the notes."""
    header = (
        "| budget | method | seeds | search-val top-1 (%) | test top-1 before FT (%) | test top-1 after FT (%) "
        "| after FT − uniform | same seeds: after FT − uniform | MACs ratio | evaluations | search CPU (s) "
        "| wall (s) |\n"
        "|---|---|---|---|---|---|---|---|---|---|---|---|\n"
    )
    rows = table_rows(runs)
    bases = list(dict.fromkeys(r["base"] for r in rows))
    sections = []
    for base in bases:
        title = f"## {base}\n\n" if len(bases) > 1 else f"Searched: {base}.\n\n"
        sections.append(title + header + "".join(_line(r) for r in rows if r["base"] == base))
    notes = (
        "\nMean ± half-width of the 95 % confidence interval over seeds (Student's t); one seed shows the value "
        "alone. Top-1 is on the test split unless it says search-val (the held-out part of the training set the "
        "search scores on); a method scored by a kl evaluator shows its agreement with the base there, "
        "100·exp(−KL(base ‖ candidate)), not top-1. FT: the search's own promotion, else an amc.finetune run with "
        "KD of its pruned.pt found under the same folders. *after FT − uniform*: Welch's 95 % interval of the "
        "difference of means; *same seeds*: the mean of the per-seed differences over the seeds both ran, with its "
        "paired 95 % interval; `*` marks an interval that excludes zero. MACs ratio: the exported network's MACs over "
        "the base's (FLOPs = 2 × MACs, so the FLOPs ratio is the same). Evaluations: strategies scored, probes "
        "included. Search CPU: the CPU seconds the search process spent on its evaluations (agent included; setup and "
        "export not; — where the run did not record them). Wall: the search's seconds plus any promotion's "
        "fine-tuning.\n"
    )
    warnings = "".join(f"\n**Repeated seed:** {line}.\n" for line in repeated_seeds(runs))
    return "\n".join(sections) + notes + warnings


def plot(runs: list[Run], path: Path) -> None:
    """Writes :func:`figure` to ``path``."""
    figure(runs).savefig(path, dpi=110)


def figure(runs: list[Run]) -> Figure:
    """Per budget, a column: best search-val score so far against evaluations (mean over seeds), and below it, where
    runs were fine-tuned and recorded their CPU seconds, test top-1 after fine-tuning against the search's CPU
    seconds (each run a point; a method's line joins its means at each CPU budget)."""
    from amc.plots import best_so_far_figure

    keys = sorted({(r.base, r.constraint, r.budget) for r in runs})
    several_bases = len({base for base, _, _ in keys}) > 1
    panels, costs = {}, {}
    for base, constraint, budget in keys:
        members = [r for r in runs if (r.base, r.constraint, r.budget) == (base, constraint, budget)]
        title = f"{constraint} budget {budget:g}" + (f"\n{base}" if several_bases else "")
        methods = sorted({r.method for r in members})
        panels[title] = {method: [r.best_so_far for r in members if r.method == method] for method in methods}
        costs[title] = {
            method: [
                (r.cpu_budget, r.cpu_s, r.test_after)
                for r in members
                if r.method == method and r.cpu_s is not None and r.test_after is not None
            ]
            for method in methods
        }
    return best_so_far_figure(panels, costs if any(p for c in costs.values() for p in c.values()) else None)
