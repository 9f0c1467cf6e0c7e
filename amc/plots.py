"""Plots a search writes into its run dir (matplotlib, no display needed).

matplotlib is imported on the first plot, not with the search, whose memory does not need it until the end.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import Any


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
