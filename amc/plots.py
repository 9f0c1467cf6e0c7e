"""Plots a search writes into its run dir, and the leaderboard's (matplotlib, no display needed).

matplotlib is imported on the first plot, not with the search, whose memory does not need it until the end.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.figure import Figure


@cache
def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_strategy(widths: Sequence[int], channels: Sequence[int], names: Sequence[str], path: Path, title: str) -> None:
    """Kept vs original channels per decision point, with keep ratios on top."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(widths)), 4))
    xs = range(len(widths))
    ax.bar(xs, widths, color="#cccccc", label="original")
    ax.bar(xs, channels, color="#2b7bba", label="kept")
    for x, c, w in zip(xs, channels, widths, strict=True):
        ax.text(x, c, f"{c / w:.2f}", ha="center", va="bottom", fontsize=7)
    ax.set_xticks(list(xs), [n.replace("features.", "f.") for n in names], rotation=60, ha="right", fontsize=7)
    ax.set_ylabel("channels")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_episodes(rewards: Sequence[float], accuracies: Sequence[float], warmup: int, path: Path, metric: str) -> None:
    plt = _pyplot()
    fig, (a, b) = plt.subplots(2, 1, figsize=(7, 5), sharex=True)
    episodes = range(1, len(rewards) + 1)
    a.plot(episodes, rewards, ".", markersize=3)
    a.set_ylabel("reward")
    b.plot(episodes, accuracies, ".", markersize=3, color="#d95f02")
    b.set_ylabel(f"search-val {metric} (%)")
    b.set_xlabel("episode")
    for ax in (a, b):
        if 0 < warmup < len(rewards):
            ax.axvline(warmup + 0.5, color="gray", lw=0.8, ls="--")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_accuracy_vs_macs(points: Sequence[tuple[str, float, float]], path: Path, title: str) -> None:
    """(label, MACs, test top-1) points."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for label, macs, acc in points:
        ax.plot(macs / 1e6, acc, "o")
        ax.annotate(label, (macs / 1e6, acc), fontsize=7, xytext=(4, 2), textcoords="offset points")
    ax.set_xlabel("MACs (M, per image)")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


CostPoint = tuple[float | None, float, float]  # (the CPU budget a run had, its CPU seconds, its test top-1)


def best_so_far_figure(
    panels: Mapping[str, Mapping[str, Sequence[Sequence[float]]]],
    costs: Mapping[str, Mapping[str, Sequence[CostPoint]]] | None = None,
) -> Figure:
    """One column per title; in each, every method's best score so far against evaluations, averaged over its runs
    (NaN where a run has no strategy yet: a method's probes), and with ``costs`` a second panel below: test top-1
    after fine-tuning against CPU seconds, each run a point, a method's line through its mean at each CPU budget.
    A method keeps one colour in every panel."""
    plt = _pyplot()
    palette = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    methods = sorted({method for curves in panels.values() for method in curves})
    color = {method: palette[i % len(palette)] for i, method in enumerate(methods)}
    rows = 2 if costs else 1
    fig, axes = plt.subplots(rows, len(panels), figsize=(5 * len(panels), 4 * rows), squeeze=False)
    if costs:
        for ax, (title, by_method) in zip(axes[1], costs.items(), strict=True):
            _cost_panel(ax, title, by_method, color)
    for ax, (title, by_method) in zip(axes[0], panels.items(), strict=True):
        for method, curves in by_method.items():
            length = max(len(c) for c in curves)
            mean = []
            for i in range(length):  # a run that stopped early holds its last value
                values = [c[min(i, len(c) - 1)] for c in curves if not math.isnan(c[min(i, len(c) - 1)])]
                mean.append(statistics.fmean(values) if values else math.nan)
            label = f"{method} ({len(curves)} run{'s' if len(curves) > 1 else ''})"
            ax.plot(range(1, length + 1), mean, color=color[method], label=label)
            ax.plot([length], [mean[-1]], "o", color=color[method])  # where the method stopped
        ax.set_title(title)
        ax.set_xlabel("evaluations (strategies scored, probes included)")
        ax.set_ylabel("best search-val top-1 so far (%)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    plt.close(fig)  # kept off pyplot's list of open figures; the caller saves it
    return fig


def _cost_panel(ax: Any, title: str, by_method: Mapping[str, Sequence[CostPoint]], color: Mapping[str, str]) -> None:
    for method, points in by_method.items():
        if not points:
            continue
        ax.plot([p[1] for p in points], [p[2] for p in points], ".", color=color[method], alpha=0.5)
        groups: dict[float | None, list[CostPoint]] = {}
        for point in points:
            groups.setdefault(point[0], []).append(point)
        means = sorted(
            (statistics.fmean(p[1] for p in group), statistics.fmean(p[2] for p in group)) for group in groups.values()
        )
        ax.plot(*zip(*means, strict=True), "o-", color=color[method], label=f"{method} ({len(points)})")
    ax.set_title(title)
    ax.set_xlabel("CPU seconds of the search's evaluations (one thread)")
    ax.set_ylabel("test top-1 after fine-tuning (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
