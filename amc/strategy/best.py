"""The end of a search: the best strategy rebuilt, tested, and written as strategy.json + pruned.pt."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import torch.nn as nn

from amc.data import stack_dataset
from amc.io import write_json_atomic
from amc.pruning.reconstruction import unreconstructed
from amc.runtime import release_freed_memory
from amc.settings import SearchConfig
from amc.strategy.recorder import SearchRecorder
from amc.strategy.task import SearchTask, export_calibration
from amc.tracking import Tracker
from amc.training.evaluation import evaluate, tensor_batches
from models import save_checkpoint

if TYPE_CHECKING:
    from amc.deployment import LatencyTimer


def measured_latency(timer: LatencyTimer, pruned: nn.Module, best: dict[str, Any]) -> dict[str, Any]:
    """The exported network's end-to-end latency against the base (PyTorch eager, batch 1), timed again as the
    search timed it, beside the table's prediction the search was held to and the search's own timing of it."""
    ratio = timer.ratio(pruned, min_run_s=5.0)
    timed = best.get("measured_cost_ratio")
    print(
        f"latency: the table predicted {best['cost_ratio']:.3f} of the base"
        + (f", the search timed {timed:.3f}" if timed is not None else "")
        + f"; measured again end to end {ratio:.3f} (PyTorch eager, batch 1, {torch.get_num_threads()} threads, "
        "fastest of 5 s of calls alternating with the base, in a process that does nothing else)"
    )
    return {
        "predicted_latency_ratio": best["cost_ratio"],
        "search_timed_latency_ratio": timed,
        "measured_latency_ratio": ratio,
    }


def export_best(
    cfg: SearchConfig, run_dir: Path, task: SearchTask, recorder: SearchRecorder, device: torch.device, tracker: Tracker
) -> dict[str, Any]:
    """Rebuild the best strategy (closed or open loop), measure its test top-1, write the results."""
    best, scorer = recorder.best, task.scorer
    if scorer.prefix_cache is not None:  # the search is over: its cached activations make room for the export
        scorer.prefix_cache.clear()
        release_freed_memory()
    if cfg.export_reconstruction == "closed":
        calibration = export_calibration(cfg, task.data, scorer)
        pruned = scorer.build_closed_loop(best["channels"], calibration)
    else:
        calibration = scorer.calibration_images
        pruned, _ = scorer.build(best["channels"])
    test_x, test_y = stack_dataset(task.data.test, limit=cfg.test_images)
    test = evaluate(pruned.to(device), tensor_batches(test_x, test_y, cfg.eval_batch_size), device)
    base_test = evaluate(scorer.model, tensor_batches(test_x, test_y, cfg.eval_batch_size), device)
    latency = measured_latency(task.latency_timer, pruned, best) if task.latency_timer is not None else {}
    strategy = recorder.strategy(
        best,
        base_checkpoint=task.base_path,
        test_top1=test["top1"],
        test_top5=test["top5"],
        base_test_top1=base_test["top1"],
        scored_in=str(scorer.dtype).removeprefix("torch."),
        export_reconstruction=cfg.export_reconstruction,
        export_calibration_images=0 if calibration is None else len(calibration),
        not_reconstructed=unreconstructed(scorer.model, scorer.structure) if cfg.reconstruct else {},
        **latency,
    )
    write_json_atomic(run_dir / "strategy.json", strategy)
    save_checkpoint(
        pruned.cpu(),
        run_dir / "pruned.pt",
        strategy=strategy,
        image_size=task.data.image_size,
        base_checkpoint=task.base_path,
    )
    recorder.finish(cfg.agent.warmup_episodes)
    tracker.summary({"best_" + k: v for k, v in strategy.items() if isinstance(v, int | float)})
    dtypes = dict.fromkeys([torch.float32, scorer.dtype])  # float32: as a user evaluates; then as episodes are scored
    base_eval_s = {str(d).removeprefix("torch."): scorer.time_base_evaluation(d) for d in dtypes}
    print(recorder.summary_line(strategy, base_eval_s, len(scorer.val_labels)))
    print(
        f"results in {run_dir}: strategy.json (the best strategy), pruned.pt (its pruned, reconstructed network), "
        "episodes.csv and episodes.png (every episode), strategy.png\n"
        f"next: python -m amc.finetune checkpoint={run_dir / 'pruned.pt'}   (recover accuracy by distillation "
        f"from the base)\n      python -m amc.deploy checkpoint={run_dir / 'pruned.pt'}     (ONNX export and latency)"
    )
    return strategy
