"""The end of a search: the best strategy rebuilt, tested, and written as strategy.json + pruned.pt."""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn
from tqdm import tqdm

from amc.data import stack_dataset
from amc.io import write_json_atomic
from amc.models import save_checkpoint
from amc.pruning import linear_solve
from amc.pruning.reconstruction import unreconstructed
from amc.runtime.memory import release_freed_memory
from amc.settings import SearchConfig
from amc.strategy.recorder import SearchRecorder, strategy_rank
from amc.strategy.scoring import StrategyScorer
from amc.strategy.task import SearchTask, export_calibration
from amc.tracking import Tracker
from amc.training.evaluation import evaluate, tensor_batches

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    from amc.timing import LatencyTimer


LATENCY_CHECKS = 20  # finalists timed at most for the export, 5 s each
EXPORT_TIMING_S = 5.0  # of calls alternating with the base, per network timed for the export


def check_finalists_latency(
    task: SearchTask, recorder: SearchRecorder, budget: float, needed: int
) -> list[dict[str, Any]]:
    """Time the best strategies end to end, best reward first, until ``needed`` of them measure within the latency
    budget; each one over it is marked so, and neither the promotion nor the export picks it.

    The search holds strategies to a latency model and times each new best once, mid-search, beside its own work;
    this is the measurement the export is held to. Latency depends on the channels alone, so each is timed
    unreconstructed. :returns: one row per network timed."""
    from amc.pruning.apply import prune_model

    assert task.latency_timer is not None
    scorer, checks, within = task.scorer, [], 0
    for row in finalists(recorder.rows, LATENCY_CHECKS):
        net = prune_model(scorer.model, scorer.structure, row["channels"], reconstruction="none").eval()
        ratio = task.latency_timer.ratio(net, min_run_s=EXPORT_TIMING_S)
        row["export_latency_ratio"] = ratio
        checks.append({"episode": row["episode"], "predicted": row["cost_ratio"], "measured": ratio})
        if ratio > budget:
            recorder.mark_over_budget(row)
            continue
        within += 1
        if within >= needed:
            break
    measured = ", ".join(f"{c['measured']:.3f}" for c in checks)
    log.log(
        logging.INFO if within else logging.WARNING,
        f"latency budget {budget:g}: timed {len(checks)} finalist(s) end to end for the export, {within} within it "
        f"(measured {measured} of the base)"
        + ("" if within else "; none of these is within it, nor is any strategy the search scored higher"),
    )
    return checks


def fit_latency(
    cfg: SearchConfig, task: SearchTask, recorder: SearchRecorder, checks: list[dict[str, Any]]
) -> dict[str, Any] | None:
    """The network to export under a latency budget, as this machine measures it: a finalist the export's check timed
    within ``[WINDOW·budget, budget]`` as it is, else the best strategy's allocation scaled until it measures there
    (:func:`amc.strategy.latency_fit.fit_to_budget`), scored and recorded as one more evaluation."""
    from amc.pruning.apply import prune_model
    from amc.strategy.budget import channel_grids
    from amc.strategy.latency_fit import WINDOW, fit_to_budget

    assert task.latency_timer is not None
    budget = task.constraint.budget
    if any(WINDOW * budget <= c["measured"] <= budget for c in checks):
        return None  # a finalist already measures where the budget is: the export takes the best of those
    source = max(recorder.rows, key=lambda r: (r["reward"], -r["episode"]))
    scorer = task.scorer
    grids = channel_grids(scorer.structure, cfg.channel_round, cfg.lower_bound)
    fit = fit_to_budget(
        source["channels"],
        grids,
        budget,
        task.latency_timer,
        lambda channels: prune_model(scorer.model, scorer.structure, channels, reconstruction="none").eval(),
    )
    env, probe = task.env, task.env.latency_probe
    env.latency_probe = None  # timed already, by the fit
    try:
        row = recorder.record(env.evaluate(fit.channels, fill=False))
    finally:
        env.latency_probe = probe
    assert fit.timing is not None
    low, high = fit.timing.spread
    row.update(export_latency_ratio=fit.timing.median_ratio, latency_fit=fit.steps, fitted_from=source["episode"])
    steps = ", ".join(f"{s['median']:.3f}" for s in fit.steps)
    (log.info if fit.within else log.warning)(
        f"latency budget {budget:g}: episode {source['episode']}'s allocation scaled until it measures within it on "
        f"this machine ({len(fit.steps)} timings: {steps}); the network exported measures {fit.timing.median_ratio:.3f}"
        f" of the base (median of interleaved pairs, quartiles {low:.3f}-{high:.3f}), search-val "
        f"{row['accuracy']:.2f} %"
        + ("" if fit.within else "; even the smallest network the wall allows measures over the budget")
    )
    return row


def best_timed_finalist(
    recorder: SearchRecorder, checks: list[dict[str, Any]] | None, budget: float
) -> dict[str, Any] | None:
    """When every finalist timed for the export measured over the latency ``budget``, the first of them: it is
    exported (flagged) rather than a higher-scored strategy that only the search's shorter mid-search timing put
    over."""
    if not checks or any(c["measured"] <= budget for c in checks):
        return None
    return next(r for r in recorder.rows if r["episode"] == checks[0]["episode"])


def measured_latency(timer: LatencyTimer, pruned: nn.Module, best: dict[str, Any], budget: float) -> dict[str, Any]:
    """The exported network's end-to-end latency against the base (batch 1, the budget's runtime), as the check
    timed it (timed now when it was not), beside the table's prediction and the search's own timing of it; a
    network that measured over ``budget`` (when no finalist fit) is exported, but never as meeting it."""
    ratio = best.get("export_latency_ratio")
    if ratio is None:
        ratio = timer.ratio(pruned, min_run_s=EXPORT_TIMING_S)
    timed = best.get("measured_cost_ratio")
    runtime = getattr(timer, "runtime", "pytorch")
    log.info(
        f"latency: the table predicted {best['cost_ratio']:.3f} of the base"
        + (f", the search timed {timed:.3f}" if timed is not None else "")
        + f"; measured end to end {ratio:.3f} ({runtime}, batch 1, {torch.get_num_threads()} threads, the median "
        "ratio of single calls interleaved with the base's; the budget means this runtime)"
    )
    if ratio > budget:
        log.warning(
            f"the latency budget {budget:g} is NOT met: the exported network measures {ratio:.3f} of the base "
            "(strategy.json: latency_budget_met false); raise the budget, or lower lower_bound"
        )
    return {
        "latency_budget_met": ratio <= budget,
        "predicted_latency_ratio": best["cost_ratio"],
        "search_timed_latency_ratio": timed,
        "measured_latency_ratio": ratio,
        "latency_runtime": runtime,
    }


def rescore_finalists(task: SearchTask, recorder: SearchRecorder, count: int) -> tuple[dict[str, Any] | None, list]:
    """When episodes were scored on part of search-val (``screen_images``), the ``count`` best distinct strategies
    scored again on all of it; the best of them by that score, and one row per finalist. (None, []) otherwise."""
    if task.rescore_images is None or count < 1:
        return None, []
    rows = finalists(recorder.rows, count)
    if not rows:
        return None, []
    scorer = task.scorer
    screened = len(scorer.val_labels)
    scorer.use_val(*task.rescore_images)
    scored = []
    for row in tqdm(rows, desc=f"finalists on all {len(scorer.val_labels)} search-val images", dynamic_ncols=True):
        score = scorer.score(row["channels"])
        scored.append({"episode": row["episode"], "screened": row["accuracy"], "search_val": score.accuracy})
        row.update(screened_accuracy=row["accuracy"], accuracy=score.accuracy, top1=score.top1, top5=score.top5)
    best = max(rows, key=lambda r: (r["accuracy"], -r["episode"]))
    log.info(
        f"finalists: the {len(rows)} best strategies on {screened} search-val images scored again on all "
        f"{len(scorer.val_labels)}; episode {best['episode']} is best there ({best['accuracy']:.2f} %)"
    )
    return best, scored


def finalists(rows: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """The ``count`` best episodes by :func:`strategy_rank` with distinct channels, none timed over a budget (the
    recorder marks every episode of a channel set once one of them is)."""
    best_of: dict[tuple[int, ...], dict[str, Any]] = {}  # insertion order is rank order: the first of equal channels
    for r in sorted(rows, key=strategy_rank, reverse=True):
        if not r.get("over_budget", False):
            best_of.setdefault(tuple(r["channels"]), r)
    return list(best_of.values())[:count]


def export_finalists(
    cfg: SearchConfig, task: SearchTask, best_row: dict[str, Any], rows: list[dict[str, Any]], device: torch.device
) -> tuple[dict[str, Any], nn.Module, list[dict[str, Any]], torch.Tensor | None]:
    """Rebuild the search's finalists as the export builds them and keep the one best on search-val.

    An episode's score is the open-loop reconstruction (in ``eval_precision``); the export refits each layer
    closed loop on more images, which reorders close strategies. With ``export_candidates`` = 1 the search's best
    is exported as it is. :returns: the winner's row, its network, every finalist's scores, the calibration images.
    """
    scorer = task.scorer
    closed = cfg.export_reconstruction == "closed"
    calibration = export_calibration(cfg, task) if closed else scorer.calibration_images
    # one candidate: the search's own best, exactly as before (also when every timed strategy was over budget)
    candidates = finalists(rows, cfg.export_candidates) if cfg.export_candidates > 1 else []
    if len(candidates) <= 1:
        return best_row, export_network(scorer, best_row["channels"], closed, calibration), [], calibration
    val = stack_dataset(task.data.search_val, limit=cfg.search_val_images)  # float32, as a user evaluates
    best: tuple[float, dict[str, Any], nn.Module] | None = None
    scored = []
    for row in tqdm(candidates, desc=f"export finalists ({cfg.export_reconstruction} loop)", dynamic_ncols=True):
        net = export_network(scorer, row["channels"], closed, calibration)
        top1 = evaluate(net.to(device), tensor_batches(*val, cfg.eval_batch_size), device)["top1"]
        scored.append({"episode": row["episode"], "search_score": row["accuracy"], "export_search_val_top1": top1})
        if best is None or top1 > best[0]:
            best = (top1, row, net)
    assert best is not None
    return best[1], best[2], scored, calibration


def export_network(scorer: StrategyScorer, channels: list[int], closed: bool, calibration: torch.Tensor | None):
    """``channels`` rebuilt as the export builds them: refit closed loop on ``calibration``, or as scored."""
    return scorer.build_closed_loop(channels, calibration) if closed else scorer.build(channels)[0]


def promote_finalists(
    cfg: SearchConfig, run_dir: Path, task: SearchTask, rows: list[dict[str, Any]], device: torch.device
) -> dict[str, Any]:
    """The ``promote.top_k`` best distinct strategies, rebuilt as exported and fine-tuned (amc.strategy.promotion)."""
    from amc.strategy.promotion import promote

    assert cfg.promote is not None
    scorer = task.scorer
    _free_prefix_cache(scorer)
    closed = cfg.export_reconstruction == "closed"
    calibration = export_calibration(cfg, task) if closed else scorer.calibration_images
    metadata = {"data": cfg.data.name, "image_size": task.data.image_size, "base_checkpoint": task.base_path}
    return promote(
        cfg.promote,
        run_dir,
        task,
        finalists(rows, cfg.promote.top_k),
        lambda channels: export_network(scorer, channels, closed, calibration),
        device,
        cfg.seed,
        metadata,
        teacher_logits_path(cfg, task),
    )


def teacher_logits_path(cfg: SearchConfig, task: SearchTask) -> Path:
    """Where the base's training-set logits are cached: by the base file's content and the data's settings."""
    digest = hashlib.sha256(Path(task.base_path).read_bytes()).hexdigest()[:16]
    data = hashlib.sha256(json.dumps(asdict(cfg.data), sort_keys=True).encode()).hexdigest()[:8]
    return Path(cfg.cache_dir).expanduser() / "teacher_logits" / f"{digest}_{cfg.data.name}_{data}.pt"


def _free_prefix_cache(scorer: StrategyScorer) -> None:
    if scorer.prefix_cache is not None:  # the search is over: its cached activations make room for the export
        scorer.prefix_cache.clear()
        release_freed_memory()


def export_best(
    cfg: SearchConfig,
    run_dir: Path,
    task: SearchTask,
    recorder: SearchRecorder,
    device: torch.device,
    tracker: Tracker,
    promotion: dict[str, Any] | None = None,
    latency_checks: list[dict[str, Any]] | None = None,
    rescored: tuple[dict[str, Any] | None, list] = (None, []),
    chosen: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], nn.Module]:
    """Rebuild the best strategy (closed or open loop), measure its test top-1, write the results; the strategy
    and its network. Without a dataset (the library's user metric) there is no test split to measure.

    :param promotion: the promotion's summary; its winner is exported instead of the search's best score.
    :param latency_checks: the finalists timed for a latency budget (:func:`check_finalists_latency`).
    :param rescored: the best finalist on all of search-val and every finalist's scores (:func:`rescore_finalists`).
    :param chosen: the row to export whatever the others say (a latency fit, :func:`fit_latency`).
    """
    scorer = task.scorer
    _free_prefix_cache(scorer)
    if promotion is not None:
        best = next(r for r in recorder.rows if r["episode"] == promotion["winner_episode"])
        closed = cfg.export_reconstruction == "closed"
        calibration = export_calibration(cfg, task) if closed else scorer.calibration_images
        pruned, scored_finalists = export_network(scorer, best["channels"], closed, calibration), []
    else:
        timed = best_timed_finalist(recorder, latency_checks, task.constraint.budget)
        search_best = chosen or timed or rescored[0] or recorder.best
        best, pruned, scored_finalists, calibration = export_finalists(cfg, task, search_best, recorder.rows, device)
    test = base_test = {"top1": None, "top5": None}
    if task.data is not None:
        test_x, test_y = stack_dataset(task.data.test, limit=cfg.test_images)
        test = evaluate(pruned.to(device), tensor_batches(test_x, test_y, cfg.eval_batch_size), device)
        base_test = evaluate(scorer.model, tensor_batches(test_x, test_y, cfg.eval_batch_size), device)
    latency = (
        measured_latency(task.latency_timer, pruned, best, task.constraint.budget)
        if task.latency_timer is not None
        else {}
    )
    strategy = recorder.strategy(
        best,
        base_checkpoint=task.base_path,
        test_top1=test["top1"],
        test_top5=test["top5"],
        base_test_top1=base_test["top1"],
        scored_in=str(scorer.settings.dtype).removeprefix("torch."),
        kept_channels=[k.tolist() for k in scorer.keep(best["channels"])],  # amc.export takes these as scored
        export_reconstruction=cfg.export_reconstruction,
        export_calibration_images=0 if calibration is None else len(calibration),
        not_reconstructed=unreconstructed(scorer.model, scorer.structure) if cfg.reconstruct else {},
        export_finalists=scored_finalists,
        **({"rescored_finalists": rescored[1]} if rescored[1] else {}),
        **(
            {"latency_fit": best["latency_fit"], "fitted_from_episode": best["fitted_from"]}
            if "latency_fit" in best
            else {}
        ),
        lsq_fallbacks=dict(linear_solve.FALLBACKS),  # singular systems solved by least squares instead, by purpose
        **latency,
        **({"export_latency_checks": latency_checks} if latency_checks is not None else {}),
        **({"promotion": promotion, "finetuned_test_top1": promotion["finetuned_test_top1"]} if promotion else {}),
    )
    write_json_atomic(run_dir / "strategy.json", strategy)
    save_checkpoint(
        pruned.cpu(),
        run_dir / "pruned.pt",
        strategy=strategy,
        **({"data": cfg.data.name, "image_size": task.data.image_size} if task.data is not None else {}),
        base_checkpoint=task.base_path,
    )
    recorder.finish(cfg.agent.warmup_episodes)
    tracker.summary({"best_" + k: v for k, v in strategy.items() if isinstance(v, int | float)})
    # float32: as a user evaluates; then as the episodes were scored
    dtypes = dict.fromkeys([torch.float32, scorer.settings.dtype])
    base_eval_s = {str(d).removeprefix("torch."): scorer.time_base_evaluation(d) for d in dtypes}
    log.info(recorder.summary_line(strategy, base_eval_s, len(scorer.val_labels)))
    if linear_solve.FALLBACKS:
        log.info(
            f"note: {sum(linear_solve.FALLBACKS.values())} least-squares systems were singular and were solved as "
            f"minimum-norm least squares instead ({dict(linear_solve.FALLBACKS)}; strategy.json: lsq_fallbacks)"
        )
    if promotion is not None:
        log.info(
            f"promotion: {promotion['top_k']} strategies fine-tuned {promotion['epochs']:g} epochs each with KD "
            f"({promotion['cost_s']:.0f} s in all); episode {promotion['winner_episode']} won on search-val top-1 "
            f"{promotion['finetuned_search_val_top1']:.2f} %: test top-1 {promotion['finetuned_test_top1']:.2f} % "
            f"after fine-tuning (finetuned.pt)"
        )
    if task.data is not None:
        log.info(
            f"results in {run_dir}: strategy.json (the best strategy), pruned.pt (its pruned, reconstructed network), "
            "episodes.csv and episodes.png (every episode), strategy.png\n"
            f"next: python -m amc.finetune checkpoint={run_dir / 'pruned.pt'}   (recover accuracy by distillation "
            f"from the base)\n      python -m amc.deploy checkpoint={run_dir / 'pruned.pt'}     (ONNX export and "
            "latency)"
        )
    return strategy, pruned
