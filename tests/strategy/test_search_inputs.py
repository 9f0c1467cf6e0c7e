"""Every setting ``amc.search`` refuses, refused before any work: composed and checked as the entry point does, in
this process (the exit path, one subprocess: tests/strategy/test_search.py)."""

from __future__ import annotations

import pytest

from amc.choices import Evaluator
from amc.strategy.checks import check_inputs
from tests.conftest import refusal


def search_refusal(tmp_path, *args: str) -> str:
    return refusal("search", "experiment=smoke", f"cache_dir={tmp_path}", *args, check=check_inputs)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["flops_budget=0"], "flops_budget must be in (0, 1]"),
        (["flops_budget=1.5"], "flops_budget must be in (0, 1]"),
        (["flops_budget=0.01"], "infeasible flops budget 0.01"),
        (["flops_budget=0.5", "checkpoint=/nonexistent/base.pt"], "checkpoint not found: /nonexistent/base.pt"),
        (["agent=nope"], "Could not find 'agent/nope'"),  # Hydra's own message, with the options
        (["episodes=0"], "episodes must be ≥ 1, got 0"),
        (["points_per_image=0"], "points_per_image must be ≥ 1, got 0"),
        (["calibration_images=many"], "Value 'many' of type 'str' could not be converted to Integer"),
        (["episods=5"], "Key 'episods' not in 'SearchConfig'"),  # a typo fails while composing
        (["lower_bound=0"], "lower_bound must be in (0, 1]"),
        (["agent.tau=2", "threads=0"], "agent.tau must be in (0, 1], got 2.0; threads must be ≥ 1, got 0"),
        (["base_training.epochs=0"], "base_training.epochs must be ≥ 1"),
        (["latency_budget=0.9", "workers=2"], "latency_budget times networks, which needs the machine to itself"),
        (["search_cpu_s=60", "workers=2"], "search_cpu_s counts the CPU seconds of the search process"),
        (["search_cpu_s=0"], "search_cpu_s must be > 0, got 0"),
        (["model=torchvision", "model.name=nope"], "unknown torchvision classification model 'nope'"),
        # a string choice outside its Enum (amc.choices) fails while composing, naming the choices
        (["selection=nope"], "selection=nope (Invalid value 'nope', expected one of [l1, l2, bn_gamma, random, lsq])"),
        (["metric=top3"], "expected one of [top1, top5]"),  # was scored as top1 without a word
        (["score=lsq+bn"], "expected one of [lsq, adabn, lsq+adabn, plain, kl"),
        (["reward=acc_latency"], "expected one of [acc, acc_flops, acc_params]"),
        (["on_existing=overwrite"], "expected one of [refuse, continue]"),
        (["logger.kind=wandbb"], "expected one of [none, wandb]"),  # a typo turned tracking on
        (["agent=optuna", "agent.sampler=grid"], "expected one of [tpe, cmaes]"),
        (["eval_precision=float16"], "expected one of [auto, float32, bfloat16]"),
        # both given used to run a params-budget search with the flops one silently ignored
        (["flops_budget=0.5", "params_budget=0.4"], "flops_budget=0.5 and params_budget=0.4 are both"),
        # a "DDPG" search whose every episode is random warm-up
        (["episodes=10", "agent.warmup_episodes=20"], "warmup_episodes=20 is not below episodes=10"),
        # an "Optuna TPE" search whose every trial is one of the sampler's random start-up trials
        (["agent=optuna", "episodes=5", "agent.warmup_episodes=5"], "every trial would be one of the tpe sampler's"),
        (["selection=lsq", "reconstruct=false"], "selection=lsq ranks channels by their least-squares refit"),
        (["agent=sensitivity", "agent.probes_from=/nonexistent/run"], "holds no probes.jsonl and config.yaml"),
    ],
)
def test_bad_search_inputs(args, message, tmp_path):
    line = search_refusal(tmp_path, *args)
    assert message in line and "\n" not in line


def test_the_smoke_settings_themselves_pass(tmp_path):
    assert search_refusal(tmp_path) == ""


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("selection", "nope", "selection must be one of l1, l2, bn_gamma, random, lsq, got 'nope'"),
        (
            "score",
            "lsq+bn",
            f"score must be one of {', '.join(Evaluator)}, got 'lsq+bn'",
        ),
        ("agent.sampler", "grid", "agent.sampler must be one of tpe, cmaes, got 'grid'"),
    ],
)
def test_a_library_caller_s_plain_string_outside_its_choices_is_refused(field, value, message, tmp_path):
    """Settings built in code, not composed by Hydra, meet the same choices."""
    import dataclasses

    from amc.errors import ConfigError
    from tests.conftest import composed

    settings = composed("search", "experiment=smoke", f"cache_dir={tmp_path}")
    if field.startswith("agent."):
        settings = dataclasses.replace(settings, agent=dataclasses.replace(settings.agent, sampler=value))
    else:
        settings = dataclasses.replace(settings, **{field: value})
    with pytest.raises(ConfigError) as refused:
        check_inputs(settings)
    assert str(refused.value) == message
