"""Gymnasium environments of amc; ``gymnasium.make("amc/ChannelPruning-v0", scorer=..., wall=...)`` once ``amc`` is
imported (``amc.make_env`` builds one over any model)."""

from amc.envs.channel_pruning import ChannelPruningEnv

ENV_ID = "amc/ChannelPruning-v0"  # registered by the amc package, which joins the env to the search that builds it

__all__ = ["ENV_ID", "ChannelPruningEnv"]
