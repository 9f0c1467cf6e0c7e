"""Choosing the finalists a search's export rebuilds."""

from __future__ import annotations

from amc.strategy.best import finalists


def row(episode: int, reward: float, channels: list[int], **extra) -> dict:
    return {"episode": episode, "reward": reward, "accuracy": 100 * reward, "channels": channels, **extra}


def test_finalists_are_the_best_distinct_strategies_within_budget():
    rows = [
        row(1, 0.80, [8, 8]),
        row(2, 0.90, [8, 16]),
        row(3, 0.95, [16, 8], over_budget=True),  # timed over a latency budget: never exported
        row(4, 0.90, [8, 16]),  # the same strategy again: counted once, as its first episode
        row(5, 0.85, [16, 16]),
        row(6, 0.70, [4, 4]),
    ]
    assert [r["episode"] for r in finalists(rows, 3)] == [2, 5, 1]
    assert [r["episode"] for r in finalists(rows, 1)] == [2]
    assert len(finalists(rows, 10)) == 4


def test_the_first_finalist_is_the_searchs_best_whatever_the_order_rows_arrive_in():
    """The latency check times finalists()[0] and the export takes the recorder's best: they must be one episode, also
    for equal rewards, rows recorded out of episode order (workers), and a strategy scored twice."""
    from amc.strategy.recorder import SearchRecorder

    rows = [
        row(3, 0.90, [8, 16]),  # a worker finished episode 3 first
        row(1, 0.90, [16, 8]),  # the same reward: the earlier episode wins
        row(2, 0.80, [8, 8]),
        row(4, 0.92, [8, 8]),  # [8, 8] again, scored higher: the strategy counts as its better episode
        row(5, 0.99, [16, 16], over_budget=True),
        row(6, 0.60, [16, 16]),  # timed over in episode 5: the same channels are over, whatever this one says
    ]
    recorder = SearchRecorder.__new__(SearchRecorder)  # its ranking alone: no run dir, no progress bar
    recorder.rows, recorder.best, recorder.over_channels = [], None, set()
    for r in rows:
        recorder.add(r)
    assert rows[5]["over_budget"] is True
    assert [r["episode"] for r in finalists(rows, 10)] == [4, 1, 3]
    assert recorder.best["episode"] == finalists(rows, 1)[0]["episode"] == 4
    recorder.mark_over_budget(rows[3])  # [8, 8] measured over: episode 2 as well
    assert rows[2]["over_budget"] is True
    assert recorder.best["episode"] == finalists(rows, 1)[0]["episode"] == 1
    assert [r["episode"] for r in finalists(rows, 10)] == [1, 3]


def test_the_metric_a_sweep_maximises_is_a_search_val_score_never_the_test_split():
    from amc.search import metric_of

    promoted = {"accuracy": 91.0, "finetuned_test_top1": 93.5, "promotion": {"finetuned_search_val_top1": 92.5}}
    assert metric_of(promoted) == 92.5
    assert metric_of({"accuracy": 91.0, "test_top1": 92.0}) == 91.0
    assert metric_of({}) is None
