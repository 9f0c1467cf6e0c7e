"""Everything a search config allows to be checked, checked before any training or measuring."""

from __future__ import annotations

import warnings
from pathlib import Path

from amc.data import dataset_info, require_data
from amc.errors import ConfigError
from amc.networks import build_model, builder_name, fit_input_size, load_model_for_data
from amc.pruning.cost_check import refuse_unpredictable_costs
from amc.pruning.structure import analyse
from amc.settings import AgentConfig, SearchConfig, budget_error, choice_errors
from amc.strategy.budget import ActionWall, make_constraint
from amc.strategy.probe_reuse import check_probes_from
from amc.strategy.runners import BATCHED_AGENTS, runner_class

DEFAULT_FLOPS_BUDGET = 0.5  # the budget of a search that names none
SHIPPED_METHODS = "amc.strategy.methods."  # the package of amc's own runners (conf/agent/*.yaml)


def constraint_of(cfg: SearchConfig) -> tuple[str, float]:
    """The one budget this run searches under: (kind, fraction of the base network's cost); a flops budget of
    0.5 when none is given, and one error line when more than one is (a search meets one budget)."""
    kinds = ("flops", "params", "latency")
    chosen = {k: getattr(cfg, f"{k}_budget") for k in kinds if getattr(cfg, f"{k}_budget") is not None}
    if len(chosen) > 1:
        given = " and ".join(f"{k}_budget={v:g}" for k, v in chosen.items())
        raise ConfigError(f"{given} are both given: a search meets one budget; keep one of them")
    kind, budget = next(iter(chosen.items())) if chosen else ("flops", DEFAULT_FLOPS_BUDGET)
    error = budget_error(f"{kind}_budget", budget)
    if error:
        raise ConfigError(error)
    return kind, float(budget)


def check_inputs(cfg: SearchConfig) -> None:
    """Model, agent, checkpoint and (without a checkpoint) the budget's feasibility; numeric ranges are
    checked when the settings are made (``amc.settings.range_errors``), and string choices here too."""
    constraint_of(cfg)  # one budget, in range
    errors = choice_errors(cfg)  # for library callers: Hydra refuses these while composing
    if errors:
        raise ConfigError(errors[0])
    if not cfg.checkpoint:
        builder_name(cfg.model)  # an unknown model fails before a base model is trained for it
    check_method(cfg)
    if cfg.checkpoint and not Path(cfg.checkpoint).is_file():
        raise ConfigError(f"checkpoint not found: {cfg.checkpoint}")
    if cfg.export_reconstruction not in ("open", "closed"):
        raise ConfigError("export_reconstruction must be open or closed")
    if cfg.selection == "lsq" and not cfg.reconstruct:
        raise ConfigError(
            "selection=lsq ranks channels by their least-squares refit: it needs reconstruct=true (or selection=l1)"
        )
    if cfg.search_cpu_s is not None and cfg.workers > 1:
        raise ConfigError("search_cpu_s counts the CPU seconds of the search process, not its workers': use workers=1")
    if cfg.latency_budget is not None and cfg.workers > 1:
        raise ConfigError("latency_budget times networks, which needs the machine to itself: use workers=1")
    require_data(cfg.data.name, cfg.data.root, cfg.data.download)  # before a base model trains on it
    if cfg.checkpoint:
        load_model_for_data(cfg.checkpoint, cfg.model, cfg.data)  # unreadable, mismatched, or another dataset's
    if not cfg.checkpoint and not cfg.resume:
        check_budget_before_training(cfg)


def check_method(cfg: SearchConfig) -> None:
    """The search method exists and its settings make sense for this run."""
    agent = cfg.agent
    runner = runner_class(agent)  # an agent.runner that does not import is one line now, not after training
    if not cfg.resume:  # a resumed run keeps the options it was saved with, even one since dropped
        check_option_names(agent, runner)
    if callable(check_options := getattr(runner, "check_options", None)):
        check_options(agent)  # the method's own settings, before the base is trained or the search starts
    learner = agent.algorithm or agent.name
    if learner in BATCHED_AGENTS and agent.warmup_episodes >= cfg.episodes:
        raise ConfigError(
            f"agent.warmup_episodes={agent.warmup_episodes} is not below episodes={cfg.episodes}: every episode "
            f"would be random warm-up and the {learner.upper()} agent would never choose "
            "(agent=random searches at random)"
        )
    if learner == "optuna" and agent.warmup_episodes >= cfg.episodes:
        raise ConfigError(
            f"agent.warmup_episodes={agent.warmup_episodes} is not below episodes={cfg.episodes}: every trial would "
            f"be one of the {agent.sampler or 'tpe'} sampler's random start-up trials (agent=random searches at random)"
        )
    if agent.grid is not None and not (agent.grid and all(0 < r < 1 for r in agent.grid)):
        raise ConfigError(f"agent.grid lists keep ratios in (0, 1), e.g. [0.25,0.5,0.75]; got {list(agent.grid)}")
    if agent.probes_from:
        check_probes_from(cfg, agent.probes_from)
    if cfg.workers > 1 and learner not in BATCHED_AGENTS:
        raise ConfigError(
            f"workers={cfg.workers} scores an RL agent's episodes in parallel ({', '.join(BATCHED_AGENTS)}); "
            f"agent={agent.name} scores one strategy after another: use workers=1"
        )


def check_option_names(agent: AgentConfig, runner: type) -> None:
    """Every ``agent.options`` key is one amc's method reads: a misspelt one would otherwise be ignored silently.
    A plug-in method (a runner outside amc) reads what it likes."""
    if not runner.__module__.startswith(SHIPPED_METHODS):
        return
    known = getattr(runner, "OPTIONS", ())
    unknown = sorted(set(agent.options or {}) - set(known))
    if unknown:
        has = f"its options: {', '.join(known)}" if known else "it has no options"
        raise ConfigError(f"unknown agent.options.{unknown[0]} for agent={agent.name} ({has})")


def check_budget_before_training(cfg: SearchConfig) -> None:
    """A MACs/params budget depends on the architecture only: check it on an untrained model, before
    a base model is trained for minutes only to be refused."""
    kind, budget = constraint_of(cfg)
    if kind == "latency":
        return
    info = dataset_info(cfg.data.name, cfg.data.crop)
    model = build_model(cfg.model, info["num_classes"], info["in_channels"], info["image_size"]).eval()
    size = fit_input_size(model, info["in_channels"], info["image_size"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # analyse warns again, once, when the search starts
        structure = analyse(model, (1, info["in_channels"], size, size), cfg.prune_residual)
    if not structure.points:
        raise ConfigError(f"{structure.arch_name} has no prunable channel group")
    refuse_unpredictable_costs(model, structure)
    ActionWall(structure, make_constraint(kind, budget, structure), cfg.lower_bound, cfg.channel_round)
