"""The Gymnasium environment and the SB3 extension points of the agent."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env

from amc import envs
from amc.envs.channel_pruning import reward_of
from amc.settings import AgentConfig
from amc.strategy.agents import EpisodeRewardBuffer, TruncatedNormalNoise, build_ddpg


@pytest.fixture(scope="module")
def env():
    return gymnasium.make(envs.ENV_ID).unwrapped


def test_both_env_checkers_pass(env):
    check_env(env, skip_render_check=True)
    sb3_check_env(env, warn=True)


def test_an_episode_reports_a_strategy_within_budget(env):
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    rng = np.random.default_rng(0)
    for t in range(env.steps):
        obs, reward, terminated, truncated, info = env.step(rng.uniform(-1, 1, 1).astype(np.float32))
        assert env.observation_space.contains(obs)
        assert terminated == (t == env.steps - 1) and not truncated
    result = info["result"]  # an EpisodeResult, only on the last step
    assert 0 < result.cost_ratio <= 0.5
    assert result.macs == env.structure.macs(result.channels)
    assert len(result.keep_ratios) == env.steps and 0 <= result.accuracy <= 100
    assert reward == pytest.approx(0.01 * result.accuracy)


def test_observation_tracks_the_true_reduction(env):
    env.reset(seed=0)
    obs, *_ = env.step(np.array([-1.0], dtype=np.float32))  # keep the lower bound at step 0
    reduced = obs[6]
    expected = 1 - env.structure.macs([*env._decided, *env.structure.widths[1:]]) / env.structure.macs(
        env.structure.widths
    )
    assert reduced == pytest.approx(expected, abs=1e-6) and reduced > 0


def test_rewards():
    assert reward_of("acc", 90.0, 10, 10) == pytest.approx(0.9)
    assert reward_of("acc_flops", 90.0, 1000, 10) == pytest.approx(-0.1 * np.log(1000))
    assert reward_of("acc_flops", 95.0, 1000, 10) > reward_of("acc_flops", 90.0, 1000, 10)
    assert reward_of("acc_params", 90.0, 10, 1000) == pytest.approx(-0.1 * np.log(1000))


def test_truncated_noise_stays_in_range_and_decays():
    noise = TruncatedNormalNoise(sigma=1.0, decay=0.9, warmup_episodes=2, seed=0)
    samples = np.concatenate([noise.sample_around(np.array([0.95], dtype=np.float32)) for _ in range(500)])
    assert samples.min() >= -1 and samples.max() <= 1
    assert noise.sigma == 1.0
    noise.episode = 12  # AMCDDPG sets it from SB3's count of finished episodes
    assert noise.sigma == pytest.approx(0.9**10)


def test_episode_reward_relabelling(env):
    agent = build_ddpg(
        env,
        env.steps,
        AgentConfig(
            name="ddpg",
            noise_sigma=1.0,
            noise_decay=0.95,
            warmup_episodes=1,
            hidden_sizes=[8],
            actor_lr=1e-4,
            critic_lr=1e-3,
            replay_episodes=5,
            batch_size=4,
            tau=0.01,
            discount=1.0,
            baseline_alpha=0.5,
        ),
        seed=0,
    )
    buffer = agent.replay_buffer
    assert isinstance(buffer, EpisodeRewardBuffer)
    obs = np.zeros((1, env.observation_space.shape[0]), np.float32)
    act = np.zeros((1, 1), np.float32)
    for final in (0.8, 0.6):
        for t in range(3):
            done = np.array([t == 2])
            buffer.add(obs, obs, act, np.array([final if t == 2 else 0.0]), done, [{}])
    # first episode: baseline = 0.8 -> 0; second: baseline 0.7 -> 0.6 - 0.7
    assert np.allclose(buffer.rewards[:3, 0], 0.0) and np.allclose(buffer.rewards[3:6, 0], -0.1)
    agent.learn(total_timesteps=2 * env.steps)
    assert agent.actor.optimizer.param_groups[0]["lr"] == 1e-4
    assert agent.critic.optimizer.param_groups[0]["lr"] == 1e-3
    assert torch.isfinite(next(agent.actor.parameters())).all()


def test_static_observation_features_describe_each_decision_point(env):
    from amc.envs.observation import FEATURES

    s = env.structure
    widest, n = max(s.widths), len(s.points)
    terms = {t.name: t for t in s.layer_terms}
    env.reset(seed=0)
    for t, point in enumerate(s.points):
        obs = env.embedding(t, [], 1.0)
        f = dict(zip(FEATURES, obs.tolist(), strict=True))
        consumer = terms[point.consumers[0]]
        assert f["index"] == pytest.approx(t / (n - 1))
        assert f["consumer_is_linear"] == float(consumer.kind == "linear")
        assert f["width"] == pytest.approx(point.channels / widest)
        assert f["kernel"] == pytest.approx(min(1.0, consumer.kernel_area / 9))
        assert f["budget"] == pytest.approx(env.wall.constraint.budget)
    assert f["consumer_is_linear"] == 1.0  # the last point of the tiny MobileNetV1 feeds its classifier
