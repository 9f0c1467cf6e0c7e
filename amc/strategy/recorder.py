"""Bookkeeping of a search: every episode to JSONL/CSV, the best strategy, progress, tracking and plots."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from amc.envs.episode import EpisodeResult
from amc.io import append_jsonl, read_jsonl, write_csv_atomic, write_json_atomic, write_text_atomic
from amc.plots import plot_episodes, plot_strategy
from amc.pruning.structure import PrunableStructure
from amc.settings import SearchConfig
from amc.strategy.budget import Constraint
from amc.tracking import Tracker

TIMING_KEYS = ("prune_s", "reconstruct_s", "recalibrate_s", "evaluate_s", "agent_s")
USER_METRIC = "evaluate()"  # strategy.json's metric when the library caller scores candidates with their own


def strategy_rank(row: dict[str, Any]) -> tuple[bool, float, int]:
    """The one order of the search's best and its finalists: within the budget first (a strategy timed over it
    loses to any other), then reward, then the earliest episode (workers may record out of order)."""
    return not row.get("over_budget", False), row["reward"], -row["episode"]


class SearchRecorder:
    def __init__(
        self,
        run_dir: Path,
        structure: PrunableStructure,
        constraint: Constraint,
        cfg: SearchConfig,
        tracker: Tracker,
        setup_s: float,
        user_metric: bool = False,
    ) -> None:
        """:param user_metric: the candidates are scored by the library caller's ``evaluate``, not top-1."""
        self.run_dir, self.structure, self.constraint, self.cfg = run_dir, structure, constraint, cfg
        self.tracker, self.setup_s = tracker, setup_s
        self.path = run_dir / "episodes.jsonl"
        self.probes_path = run_dir / "probes.jsonl"  # a method's probing evaluations (networks off the budget)
        self.rows: list[dict[str, Any]] = []
        self.probes: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None
        # channel sets timed over a latency budget at least once: latency depends on the channels alone, so every
        # episode of such a set is marked over, whenever it was recorded (a later timing within is noise)
        self.over_channels: set[tuple[int, ...]] = set()
        self.bar = tqdm(total=cfg.episodes, desc=f"search ({cfg.agent.name})", dynamic_ncols=True)
        self.last_time, self.last_cpu = time.perf_counter(), time.process_time()
        self.user_metric = user_metric
        self.metric_name = USER_METRIC if user_metric else f"search-val {cfg.metric}"  # what ``accuracy`` holds
        if not cfg.resume:
            self.path.unlink(missing_ok=True)
            self.probes_path.unlink(missing_ok=True)

    @property
    def episodes(self) -> int:
        return len(self.rows)

    @property
    def evaluations(self) -> int:
        """Strategies scored so far: the episodes and a method's probes alike (``episodes=`` bounds this)."""
        return len(self.rows) + len(self.probes)

    @property
    def cpu_s(self) -> float:
        """CPU seconds the evaluations so far used (rows recorded before it was measured count none)."""
        return sum(r.get("cpu_s", 0.0) for r in (*self.rows, *self.probes))

    def history(self) -> list[dict[str, Any]]:
        """Every evaluation so far, episodes and probes, in the order they were scored."""
        return sorted([*self.rows, *self.probes], key=lambda r: r["evaluation"])

    def truncate(self, episodes: int, probes: int = 0) -> None:
        """Keep the first ``episodes`` rows and ``probes`` probes (drop what was in flight when the run was killed)."""
        self.rows = read_jsonl(self.path)[:episodes]
        write_text_atomic(self.path, "".join(json.dumps(r) + "\n" for r in self.rows))
        self.probes = read_jsonl(self.probes_path)[:probes] if self.probes_path.exists() else []
        if self.probes or self.probes_path.exists():
            write_text_atomic(self.probes_path, "".join(json.dumps(r) + "\n" for r in self.probes))
        for n, row in enumerate(self.history(), 1):  # runs recorded before probes existed number no evaluation
            row.setdefault("evaluation", n)
        self.over_channels = set()
        for row in self.rows:
            if row.get("over_budget", False):
                self._mark_over(row["channels"])
        self._rank_best()
        self.bar.n = self.evaluations
        self.bar.refresh()
        self.last_time, self.last_cpu = time.perf_counter(), time.process_time()

    def add(self, row: dict[str, Any]) -> None:
        """Rank an episode's row in: over the budget when its channels ever were, and then so are the earlier
        episodes of them (a resume redoes it from episodes.jsonl)."""
        self.rows.append(row)
        if row.get("over_budget", False) or tuple(row["channels"]) in self.over_channels:
            self._mark_over(row["channels"])
            if self.best is not None and self.best["channels"] == row["channels"]:
                self._rank_best()
        self._update_best(row)

    def mark_over_budget(self, row: dict[str, Any]) -> None:
        """``row`` was measured over the budget after it was recorded: it, and every episode of the same channels,
        loses to every strategy within it."""
        self._mark_over(row["channels"])
        self._rank_best()

    def _mark_over(self, channels: list[int]) -> None:
        self.over_channels.add(tuple(channels))
        for r in self.rows:
            if r["channels"] == channels:
                r["over_budget"] = True

    def _rank_best(self) -> None:
        self.best = None
        for r in self.rows:
            self._update_best(r)

    def _update_best(self, row: dict[str, Any]) -> bool:
        if self.best is None or strategy_rank(row) > strategy_rank(self.best):
            self.best = row
            return True
        return False

    def _row(self, result: EpisodeResult) -> dict[str, Any]:
        now, cpu_now = time.perf_counter(), time.process_time()
        wall, cpu = now - self.last_time, cpu_now - self.last_cpu
        self.last_time, self.last_cpu = now, cpu_now
        timings = dict(result.timings)
        timings["agent_s"] = max(0.0, wall - sum(timings.values()))
        return {
            "evaluation": self.evaluations + 1,
            "reward": result.reward,
            "accuracy": result.accuracy,
            "top1": result.top1,
            "top5": result.top5,
            "macs": result.macs,
            "params": result.params,
            "cost_ratio": result.cost_ratio,
            "channels": result.channels,
            "agent_channels": result.agent_channels,
            "wall_s": wall,
            "cpu_s": cpu,  # this process's CPU seconds (all its threads) since the evaluation before
            **timings,
            "reused_stages": result.reused_stages,
            **({"evaluator": result.evaluator} if result.evaluator else {}),
        }

    def record_probe(self, result: EpisodeResult) -> dict[str, Any]:
        """A method's probing evaluation: it counts toward ``episodes`` but is no candidate strategy."""
        row = {"probe": len(self.probes) + 1, **self._row(result)}
        self.probes.append(row)
        append_jsonl(self.probes_path, row)
        self.bar.update(1)
        self.bar.set_postfix(probe=f"{row['accuracy']:.2f}%", cost=f"{row['cost_ratio']:.3f}")
        return row

    def record(self, result: EpisodeResult) -> dict[str, Any]:
        row = {"episode": self.episodes + 1, **self._row(result)}
        if result.measured_cost_ratio is not None:
            row |= {"measured_cost_ratio": result.measured_cost_ratio, "over_budget": result.over_budget}
        earlier_best = self.best
        self.add(row)
        append_jsonl(self.path, row)
        if self.best is not None and self.best is not earlier_best:
            self._write_strategy(self.strategy(self.best))
        self.bar.update(1)
        self.bar.set_postfix(
            reward=f"{row['reward']:.3f}",
            **self._scores(row["accuracy"], self.best["accuracy"]),
            cost=f"{row['cost_ratio']:.3f}",
        )
        self.tracker.log({k: v for k, v in row.items() if not isinstance(v, list)}, step=row["episode"])
        return row

    def _scores(self, score: float, best: float) -> dict[str, str]:
        """The progress bar's score and best so far: top-1 in percent, or the user's metric as it is."""
        if self.user_metric:
            return {"score": f"{score:.4g}", "best": f"{best:.4g}"}
        return {"acc": f"{score:.2f}%", "best": f"{best:.2f}%"}

    def strategy(self, row: dict[str, Any], **extra: Any) -> dict[str, Any]:
        s = self.structure
        widths = s.widths
        return {
            "flops_budget": self.constraint.budget if self.constraint.kind == "flops" else None,
            "constraint": self.constraint.kind,
            "budget": self.constraint.budget,
            "cost": self.constraint.cost(row["channels"]),
            "base_cost": self.constraint.base_cost,
            "macs": row["macs"],
            "base_macs": s.macs(widths),
            "macs_ratio": row["macs"] / s.macs(widths),
            "params": row["params"],
            "base_params": s.params(widths),
            "channels": row["channels"],
            "widths": widths,
            "decision_points": [p.name for p in s.points],
            "prune_residual": s.prune_residual,
            "keep_ratios": [c / w for c, w in zip(row["channels"], widths, strict=True)],
            "accuracy": row["accuracy"],
            "metric": self.metric_name,
            "search_val_top1": row["top1"],
            "episode": row["episode"],
            "model": s.arch_name,
            "seed": self.cfg.seed,
            "agent": self.cfg.agent.name,
            "selection": self.cfg.selection,
            **extra,
        }

    def _write_strategy(self, strategy: dict[str, Any]) -> None:
        write_json_atomic(self.run_dir / "strategy.json", strategy)

    def median_timings(self, warmup: int) -> dict[str, float]:
        rows = self.rows[warmup:] or self.rows
        return {k: statistics.median(r.get(k, 0.0) for r in rows) for k in (*TIMING_KEYS, "wall_s")}

    def finish(self, warmup: int) -> None:
        fields = list(dict.fromkeys(k for row in self.rows for k in row))  # rows of older runs may lack a column

        def cell(value: Any) -> Any:
            return " ".join(map(str, value)) if isinstance(value, list) else value

        table = ([cell(row.get(k, "")) for k in fields] for row in self.rows)
        write_csv_atomic(self.run_dir / "episodes.csv", fields, table)
        best = self.best
        plot_strategy(
            self.structure.widths,
            best["channels"],
            [p.name for p in self.structure.points],
            self.run_dir / "strategy.png",
            f"best strategy (episode {best['episode']}): {self.cfg.metric} {best['accuracy']:.2f} %, "
            f"{self.constraint.kind} {self.constraint.cost(best['channels']) / self.constraint.base_cost:.4f}",
        )
        plot_episodes(
            [r["reward"] for r in self.rows],
            [r["accuracy"] for r in self.rows],
            warmup,
            self.run_dir / "episodes.png",
            self.cfg.metric,
        )

    def summary_line(
        self, strategy: dict[str, Any], base_eval_s: dict[str, float] | None = None, val_images: int = 0
    ) -> str:
        """:param base_eval_s: seconds to evaluate the unpruned base on the search-val images, by dtype name."""
        t = self.median_timings(self.cfg.agent.warmup_episodes)
        keys = [k for k in TIMING_KEYS if k != "recalibrate_s" or "adabn" in self.cfg.score]
        split = ", ".join(f"{k[:-2]} {t[k]:.2f}" for k in keys)
        if self.cfg.workers > 1:  # episodes arrive in batches: the wall time between two says nothing per episode
            scoring = sum(t[k] for k in keys if k != "agent_s")
            split = ", ".join(f"{k[:-2]} {t[k]:.2f}" for k in keys if k != "agent_s")
            t = {**t, "wall_s": scoring}
            split += f"; each in its worker, {self.cfg.workers} at once"
        tested = strategy.get("test_top1")
        scored = (
            f"search-val {self.cfg.metric} {strategy['accuracy']:.2f} %, test top-1 {tested:.2f} %"
            if tested is not None
            else f"your evaluate() {strategy['accuracy']:.4g}"
        )
        return (
            f"best: episode {strategy['episode']}, {scored}, "
            f"MACs {strategy['macs']:,} = {strategy['macs_ratio']:.4f} of "
            f"{strategy['base_macs']:,} (FLOPs = 2 x MACs), params {strategy['params']:,}\n"
            f"median seconds per episode {t['wall_s']:.2f} ({split}); "
            f"{sum(r.get('reused_stages', 0) > 0 for r in self.rows)} of {len(self.rows)} episodes started from "
            f"cached early-layer activations; {self.episodes_per_minute():.1f} episodes per minute"
            + (f" ({self.cfg.workers} workers)" if self.cfg.workers > 1 else "")
            + (self._cost_against_base(t["wall_s"], base_eval_s, val_images) if base_eval_s else "")
        )

    @staticmethod
    def _cost_against_base(episode_s: float, base_eval_s: dict[str, float], val_images: int) -> str:
        times = " / ".join(f"{s:.2f} s in {dtype}" for dtype, s in base_eval_s.items())
        ratios = " / ".join(f"{episode_s / s:.2f}" for s in base_eval_s.values())
        return (
            f"\nevaluating the unpruned base (BN folded) on the same {val_images} search-val images takes {times}: "
            f"a median episode costs {ratios} of that"
        )

    def episodes_per_minute(self) -> float:
        """Over the whole search (with parallel workers the per-episode wall times are not separable)."""
        return 60 * len(self.rows) / max(sum(r["wall_s"] for r in self.rows), 1e-9)

    def close(self) -> None:
        self.bar.close()
