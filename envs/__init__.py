"""Gymnasium environments of amc; ``gymnasium.make("amc/ChannelPruning-v0", scorer=..., wall=...)``."""

import gymnasium

from amc.envs.channel_pruning import ChannelPruningEnv

ENV_ID = "amc/ChannelPruning-v0"

if ENV_ID not in gymnasium.registry:
    # without arguments: the tiny digits task, which amc.strategy builds (the env itself knows no strategy code)
    gymnasium.register(id=ENV_ID, entry_point="amc.strategy.tiny:make_env")

__all__ = ["ENV_ID", "ChannelPruningEnv"]
