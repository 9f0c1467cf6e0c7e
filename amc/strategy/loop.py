"""One search, top to bottom: build the task, let the agent play episodes, export the best strategy.

A search killed at any point continues with ``resume=RUN_DIR`` from its last saved episode boundary
(``amc.strategy.state``); the episode in flight is replayed exactly.
"""

from __future__ import annotations

import logging
import resource
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn

from amc.envs.episode import EpisodeResult
from amc.errors import ConfigError, NoStrategyError
from amc.runtime.memory import release_freed_memory
from amc.runtime.process import seed_everything, set_threads
from amc.settings import SearchConfig
from amc.strategy.best import (
    check_finalists_latency,
    export_best,
    fit_latency,
    promote_finalists,
    rescore_finalists,
)
from amc.strategy.recorder import SearchRecorder
from amc.strategy.runners import Runner, WorkerDied, make_runner, minimum_evaluations
from amc.strategy.state import SearchStateFiles
from amc.strategy.task import SearchTask, build_task
from amc.tracking import Tracker
from amc.training.distributed import pick_device

log = logging.getLogger(__name__)

RESULT_FILES = ("episodes.jsonl", "strategy.json", "pruned.pt", "search_state.json")
FINISHED_FILES = ("strategy.json", "pruned.pt")  # the export writes them last: a search killed before has neither


class SearchSession:
    """This invocation's share of a search: records episodes, saves the runner's state, honours ``stop_after``, and
    ends the search when its evaluations have used ``cpu_s`` CPU seconds."""

    def __init__(
        self,
        recorder: SearchRecorder,
        files: SearchStateFiles,
        runner: Runner,
        episodes: int,
        stop_after: int | None,
        cpu_s: float | None = None,
    ) -> None:
        self.recorder, self.files, self.runner = recorder, files, runner
        self.episodes, self.stop_after, self.cpu_s = episodes, stop_after, cpu_s
        self.finished_here = 0

    @property
    def cpu_spent(self) -> float:
        """CPU seconds the recorded evaluations have used (``search_cpu_s`` counts them)."""
        return self.recorder.cpu_s

    @property
    def out_of_cpu(self) -> bool:
        """The evaluations have used the search's CPU seconds (``search_cpu_s``)."""
        return self.cpu_s is not None and self.cpu_spent >= self.cpu_s

    def _may_go_on(self) -> bool:
        """Neither ``stop_after`` nor the CPU seconds end this invocation yet."""
        under_stop = self.stop_after is None or self.finished_here < self.stop_after
        return under_stop and not self.out_of_cpu

    def wants_more(self) -> bool:
        return self.recorder.evaluations < self.episodes and self._may_go_on()

    @property
    def stopped(self) -> bool:
        """``stop_after`` ended this invocation before the search used its evaluations."""
        at_stop = self.stop_after is not None and self.finished_here >= self.stop_after
        return at_stop and self.recorder.evaluations < self.episodes

    def episode_done(self, result: EpisodeResult) -> bool:
        self.recorder.record(result)
        self.finished_here += 1
        return self._may_go_on()

    def probe_done(self, result: EpisodeResult) -> bool:
        self.recorder.record_probe(result)
        self.finished_here += 1
        return self._may_go_on()

    def history(self) -> list[dict[str, Any]]:
        return self.recorder.history()

    def checkpoint(self) -> None:
        if self.recorder.evaluations == 0:
            return
        state = self.runner.state()  # after the check: DDPG's state copies the whole replay buffer
        if state is None:
            return
        scalars, tensors = state
        self.files.save(self.recorder.episodes, scalars, tensors, len(self.recorder.probes))


def search(cfg: SearchConfig, run_dir: Path) -> dict[str, Any]:
    """Run (or resume, with ``cfg.resume``) a search into ``run_dir``; the best strategy, once finished."""
    set_threads(cfg.threads)
    seed_everything(cfg.seed)
    device = pick_device(cfg.device)
    started = time.perf_counter()
    task = build_task(cfg, device)
    return run_search(cfg, run_dir, task, device, started)[0]


def run_search(
    cfg: SearchConfig, run_dir: Path, task: SearchTask, device: torch.device, started: float
) -> tuple[dict[str, Any], nn.Module | None, SearchRecorder]:
    """The search over a built task, into ``run_dir`` (resumed with ``cfg.resume``): the CLI's and the library's.

    :returns: the best strategy (empty when stopped early), its exported network, and the episode records.
    """
    if cfg.resume:
        for stale in run_dir.glob("*.tmp"):  # a write the kill interrupted; its target is intact
            stale.unlink()
    release_freed_memory()  # base training and calibration are done with their activations
    setup_s = time.perf_counter() - started
    tracker = Tracker(cfg.logger.kind, run_dir, asdict(cfg), cfg.logger.project, mode=cfg.logger.mode)
    user_metric = task.scorer.user_evaluate is not None
    recorder = SearchRecorder(run_dir, task.structure, task.constraint, cfg, tracker, setup_s, user_metric)
    files = SearchStateFiles(run_dir)
    workers = None
    if cfg.workers > 1:  # check_inputs allows workers only for the agents that score batches of episodes
        from amc.strategy.workers import parallel_envs

        workers = parallel_envs(cfg, task.base_path)
        log.info(f"scoring {cfg.workers} strategies at once: {cfg.workers} worker processes")
    runner = make_runner(task.env, cfg.agent, cfg.seed, workers)
    needed = minimum_evaluations(runner)
    if cfg.episodes < needed:
        recorder.close()
        raise ConfigError(
            f"agent={cfg.agent.name} needs at least {needed} evaluations on {task.structure.arch_name} "
            f"({len(task.structure.points)} decision points) to score one strategy; episodes={cfg.episodes}: "
            "raise episodes"
        )
    if cfg.resume and files.exists():
        saved = files.load()
        runner.restore(saved)
        recorder.truncate(saved.episodes, saved.probes)
        log.info(f"resuming the search at evaluation {recorder.evaluations + 1} of {cfg.episodes}")
    elif cfg.resume:
        recorder.truncate(0)  # killed before its first saved state: nothing to continue from
    c = task.constraint
    log.info(
        f"searching {cfg.agent.name} over {len(task.structure.points)} decision points of {task.structure.arch_name}: "
        f"{c.kind} budget {c.budget:g} of {c.base_cost:,.0f} {c.unit}, channels ranked by {cfg.selection}, "
        + (
            "scored by your evaluate()"
            if task.scorer.user_evaluate is not None
            else f"scored by search-val {cfg.metric} on {len(task.scorer.val_labels)} images "
            f"in {str(task.scorer.settings.dtype).removeprefix('torch.')} (eval_precision={cfg.eval_precision})"
        )
    )
    session = SearchSession(recorder, files, runner, cfg.episodes, cfg.stop_after, cfg.search_cpu_s)
    if recorder.evaluations < cfg.episodes and not session.out_of_cpu:
        try:
            runner.run(cfg.episodes - recorder.evaluations, session)
        except WorkerDied as error:
            recorder.close()
            raise WorkerDied(f"{error}; episodes up to the last saved state are kept: resume={run_dir}") from None
    recorder.close()
    if session.out_of_cpu:
        log.info(
            f"search_cpu_s={cfg.search_cpu_s:g}: stopped after {recorder.evaluations} of {cfg.episodes} evaluations, "
            f"which used {recorder.cpu_s:.1f} CPU seconds"
        )
    if recorder.best is None and not session.stopped:  # a method that spent every evaluation on probes
        spent = (
            f"its search_cpu_s={cfg.search_cpu_s:g} CPU seconds ({recorder.evaluations} evaluations)"
            if session.out_of_cpu
            else f"its {cfg.episodes} evaluations"
        )
        raise NoStrategyError(
            f"agent={cfg.agent.name} scored no strategy within the budget in {spent} "
            f"(only probes: {run_dir / 'probes.jsonl'}); raise "
            + ("search_cpu_s" if session.out_of_cpu else "episodes")
        )
    if session.stopped:
        log.info(
            f"stopped with {recorder.evaluations} of {cfg.episodes} evaluations recorded; "
            f"continue with resume={run_dir} "
            "(it replays from the last episode whose agent update was saved)"
        )
        tracker.finish()
        return recorder.best or {}, None, recorder
    latency_checks, fitted = None, None
    if task.latency_timer is not None:
        needed = max(cfg.export_candidates, cfg.promote.top_k if cfg.promote is not None else 0, 1)
        latency_checks = check_finalists_latency(task, recorder, task.constraint.budget, needed)
        fitted = fit_latency(cfg, task, recorder, latency_checks)
    rescored = rescore_finalists(task, recorder, cfg.rescore_finalists)
    promotion = None
    if cfg.promote is not None and cfg.promote.top_k > 0:
        promotion = promote_finalists(cfg, run_dir, task, recorder.rows, device)
    strategy, pruned = export_best(
        cfg, run_dir, task, recorder, device, tracker, promotion, latency_checks, rescored, chosen=fitted
    )
    task.close()
    usage = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    log.info(f"wall time {time.perf_counter() - started:.0f} s (setup {setup_s:.0f} s); peak RSS {usage:.2f} GiB")
    tracker.finish()
    return strategy, pruned, recorder
