"""Gymnasium environments of amc; ``gymnasium.make("amc/ChannelPruning-v0", scorer=..., wall=...)``."""

import gymnasium

from amc.envs.channel_pruning import ChannelPruningEnv

ENV_ID = "amc/ChannelPruning-v0"

if ENV_ID not in gymnasium.registry:
    gymnasium.register(id=ENV_ID, entry_point="amc.envs.channel_pruning:ChannelPruningEnv")

__all__ = ["ENV_ID", "ChannelPruningEnv"]
