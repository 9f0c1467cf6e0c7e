"""The statistics of experiments/predictiveness.py: rank correlations with bootstrap intervals."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
from scipy.stats import kendalltau, spearmanr

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "experiments"))
import evaluator_seconds
import headroom
import predictiveness


def test_a_correlation_comes_with_an_interval_around_it():
    x, y = np.array([1, 2, 3, 4, 5, 6, 7, 9.0]), np.array([1, 3, 2, 4, 5, 7, 6, 8.0])
    estimate, low, high = predictiveness.bootstrap_ci(x, y, spearmanr)
    assert estimate == spearmanr(x, y)[0] and low <= estimate <= high <= 1.0 and low < high


def test_a_score_that_is_the_same_for_every_strategy_ranks_nothing():
    """Plain evaluation at flops 0.25 scores chance for every network: undefined, not a crash at the run's end."""
    constant = predictiveness.bootstrap_ci(np.full(8, 10.48), np.arange(8.0), kendalltau)
    assert all(math.isnan(v) for v in constant)
    plain = {"spearman": (math.nan,) * 3, "kendall": (math.nan,) * 3, "spearman_minus_default": (math.nan,) * 3}
    plain["seconds"] = 1.0
    table = predictiveness.report(
        [{"budget": 0.25, "strategies": 8, "epochs": 0.5, "lr": 0.005, "correlations": {"plain": plain}}]
    )
    assert "| 0.25 | plain | 8 | undefined (every strategy scored alike) |" in table
    assert "(0.5 epoch at lr 0.005, the base as teacher)" in table


def test_a_finetuning_that_ends_below_its_starting_score_is_diverged_and_reported_apart():
    promoted = [
        {"episode": 3, "search_score": 88.06, "finetuned_search_val_top1": 43.4},  # the KD blew up
        {"episode": 6, "search_score": 82.4, "finetuned_search_val_top1": 92.82},
        {"episode": 22, "search_score": 68.98, "finetuned_search_val_top1": 92.38},
        {"episode": 40, "search_score": 93.68, "finetuned_search_val_top1": 93.56},  # near the base: a few tenths
    ]
    assert predictiveness.diverged_finetunings(promoted) == {3}
    lsq = {"spearman": (0.5, 0.1, 0.8), "kendall": (0.4, 0.1, 0.6), "spearman_minus_default": (0, 0, 0), "seconds": 6.6}
    result = {"budget": 0.25, "strategies": 40, "epochs": 0.5, "lr": 0.005, "diverged_episodes": [3]}
    table = predictiveness.report(
        [{**result, "correlations": {"lsq": lsq}, "correlations_without_diverged": {"lsq": lsq}}]
    )
    assert "| 0.25 | lsq | 40 | 0.50 [0.10, 0.80] | 0.40 [0.10, 0.60] | — | 6.60 |" in table
    assert "| 0.25 | lsq | 39 (1 diverged left out) | 0.50 [0.10, 0.80] |" in table


def test_the_gap_to_the_default_evaluator_is_resampled_in_pairs():
    """Both correlations on the same resampled strategies: a better ranking shows even where the two intervals
    overlap, and an evaluator identical to the default differs by exactly nothing."""
    rng = np.random.default_rng(1)
    truth = np.arange(40.0)
    better, default = truth + rng.normal(0, 5, 40), truth + rng.normal(0, 20, 40)
    estimate, low, high = predictiveness.difference_ci(better, default, truth, spearmanr)
    assert estimate == spearmanr(better, truth)[0] - spearmanr(default, truth)[0]
    assert 0 < low < estimate < high
    assert predictiveness.difference_ci(default, default, truth, spearmanr) == (0.0, 0.0, 0.0)


def test_a_relaunch_knows_which_strategies_an_earlier_launch_finished(tmp_path):
    """Only strategies both scored and fine-tuned count: the relaunch reports from the last finished chunk on."""
    scores, promoted = tmp_path / "evaluator_scores.jsonl", tmp_path / "promotion.jsonl"
    assert predictiveness.finished_before(scores, promoted) == set()
    scores.write_text("".join(f'{{"episode": {e}}}\n' for e in (8, 41, 30, 12)))
    promoted.write_text("".join(f'{{"episode": {e}}}\n' for e in (8, 41, 30)))
    assert predictiveness.finished_before(scores, promoted) == {8, 41, 30}


def test_the_retest_reports_the_ceiling_then_every_evaluator_against_the_mean():
    lsq = {"spearman": (0.5, 0.1, 0.8), "kendall": (0.4, 0.1, 0.6), "spearman_minus_default": (0, 0, 0), "seconds": 1}
    kd = {**lsq, "spearman": (0.7, 0.4, 0.9), "spearman_minus_default": (0.2, -0.1, 0.5)}
    result = {
        "budget": 0.25, "strategies": 8, "seeds": [2018, 2019], "epochs": 0.5, "lr": 0.005, "grad_clip_norm": 2.0,
        "retest_spearman": (0.61, 0.2, 0.88), "mean_abs_difference": 0.134,
        "correlations_with_mean": {"lsq": lsq, "lsq+kd20": kd},
    }  # fmt: skip
    table = predictiveness.retest_report([result])
    assert "| 0.25 | 8 | 2018 and 2019 | 0.61 [0.20, 0.88] | 0.13 |" in table
    assert "| 0.25 | lsq | 0.50 [0.10, 0.80] | — |" in table
    assert "| 0.25 | lsq+kd20 | 0.70 [0.40, 0.90] | 0.20 [-0.10, 0.50] |" in table
    assert "gradients clipped at 2" in table


@pytest.mark.parametrize("report", sorted(p.stem for p in (ROOT / "experiments" / "predictiveness").glob("*.json")))
def test_a_committed_report_is_what_its_committed_results_give(report):
    folder = ROOT / "experiments" / "predictiveness"
    results = json.loads((folder / f"{report}.json").read_text())
    if report in ("evaluator_seconds", "headroom"):
        describe = {"evaluator_seconds": evaluator_seconds.report, "headroom": headroom.report}[report]
    else:
        describe = predictiveness.retest_report if report.endswith("_retest") else predictiveness.report
    assert describe(results) == (folder / f"{report}.md").read_text()


def test_timing_one_budget_keeps_the_others_as_they_were_measured():
    timed = {
        "seconds": {"lsq": 2.0, "lsq+kd20": 7.0},
        "strategies": 3,
        "threads": 1,
        "dtype": "bfloat16",
        "cpu": "some CPU",
        "date": "2026-12-07",
        "command": "python experiments/evaluator_seconds.py budgets=0.5",
    }
    earlier = {"0.1": {**timed, "seconds": {"lsq": 0.5, "lsq+kd20": 1.7}, "command": "earlier"}}
    table = evaluator_seconds.report(earlier | {"0.5": timed})
    assert "| lsq+kd20 | 1.70 | 3.40 | 7.00 | 3.50 |" in table  # flops 0.1's columns, then 0.5's
    assert "| plain | — | — | — | — |" in table  # an evaluator neither timed
    assert "Command: earlier" in table and "Command: python experiments/evaluator_seconds.py budgets=0.5" in table


def test_where_uniform_stands_among_the_strategies_fine_tuned_with_the_same_seeds():
    result = {
        "budget": 0.1, "epochs": 0.5, "grad_clip_norm": 2.0, "seeds": [2018, 2019], "uniform": [90.0, 90.2],
        "strategies": {"1": [91.0, 90.6], "2": [89.0, 89.4], "3": [90.2, 90.4], "4": [90.5, 91.5]},
    }  # fmt: skip
    row = headroom.summary(result)
    # uniform 90.1; means 90.8, 89.2, 90.3, 91.0; the best at 2018 is "1", 90.6 at 2019 against uniform's 90.2
    assert row == ["0.1", "4", "90.10", "3", "91.00 (+0.90)", "+0.40", "2", "+0.45"]
    assert "| 0.1 | 4 | 90.10 | 3 | 91.00 (+0.90) | +0.40 | 2 | +0.45 |" in headroom.report([result])
