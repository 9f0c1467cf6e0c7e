"""The reinforcement-learning agents: stable-baselines3's DDPG, TD3 and SAC set up as AMC.

AMC's tricks live in SB3's extension points, each a few dozen lines:

* ``TruncatedNormalNoise`` (an ``ActionNoise``): exploration σ = σ₀·decay^(episode − warm-up),
  sampled as a normal *truncated* to the action range around the actor's output (not clipped,
  which would pile mass on the bounds).
* ``EpisodeRewardBuffer`` (a ``ReplayBuffer``): holds an episode's transitions until it ends, then
  stores every one with the episode's final reward minus a moving baseline b ← b + α(R − b).
* ``AMCDDPG`` (a ``DDPG``): separate actor/critic learning rates, the truncated noise, and pure
  uniform actions during the warm-up episodes (SB3's ``learning_starts``). ``AMCTD3`` is the same on TD3
  (twin critics, delayed policy updates, target smoothing); ``AMCSAC`` keeps SAC's own entropy-driven
  exploration and takes the buffer, the warm-up and the learning rates.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from stable_baselines3 import DDPG, SAC, TD3
from stable_baselines3.common.buffers import ReplayBuffer
from stable_baselines3.common.noise import ActionNoise, VectorizedActionNoise
from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

from amc.settings import AgentConfig


class TruncatedNormalNoise(ActionNoise):
    """Per-episode decaying, truncated-normal exploration (AMC: σ = 0.5·0.95^(episode − warm-up) on [0, 1]).

    :param sigma: initial σ in the agent's action units (our actions span [-1, 1], so AMC's 0.5 is 1.0).
    :param decay: factor per episode after the warm-up.
    :param warmup_episodes: episodes of uniform random actions before the policy acts.
    """

    def __init__(
        self,
        sigma: float = 1.0,
        decay: float = 0.95,
        warmup_episodes: int = 100,
        low: float = -1.0,
        high: float = 1.0,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.sigma0, self.decay, self.warmup_episodes = sigma, decay, warmup_episodes
        self.low, self.high = low, high
        self.episode = 0  # finished episodes; AMCDDPG sets it from SB3's own counter before sampling
        self.rng = np.random.default_rng(seed)

    @property
    def sigma(self) -> float:
        return self.sigma0 * self.decay ** max(0, self.episode - self.warmup_episodes)

    def sample_around(self, mean: np.ndarray) -> np.ndarray:
        from scipy.stats import truncnorm  # ≈ 1 s to import: paid by the RL searches only, not by every command

        sigma = max(self.sigma, 1e-6)
        a, b = (self.low - mean) / sigma, (self.high - mean) / sigma
        mean = np.asarray(mean, dtype=np.float64)
        sample = truncnorm.rvs(a, b, loc=mean, scale=sigma, size=mean.shape, random_state=self.rng)
        return np.asarray(sample, dtype=np.float32).reshape(mean.shape)

    def __call__(self) -> np.ndarray:  # plain ActionNoise interface (unused by AMCDDPG)
        return self.rng.normal(0.0, self.sigma, size=1).astype(np.float32)

    def reset(self) -> None:  # SB3 also calls this at the start of learn(): the schedule cannot count on it
        pass


class EpisodeRewardBuffer(ReplayBuffer):
    """Relabels every transition of an episode with (final reward − moving baseline)."""

    def __init__(self, *args: Any, baseline_alpha: float = 0.5, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.baseline_alpha = baseline_alpha
        self.baseline: float | None = None
        self.pending: list[tuple] = []

    def add(self, obs, next_obs, action, reward, done, infos) -> None:
        self.pending.append((obs, next_obs, action, done, infos))
        done = np.asarray(done).reshape(-1)
        if not done.any():
            return
        # Every environment's episode has the same number of steps (one per decision point), so the
        # parallel workers' episodes end together; each is relabelled with its own final reward.
        assert done.all(), "parallel episodes of different lengths"
        relabelled = np.empty(len(done), dtype=np.float32)
        for env, final in enumerate(np.asarray(reward, dtype=np.float64).reshape(-1)):
            final = float(final)
            self.baseline = (
                final if self.baseline is None else self.baseline + self.baseline_alpha * (final - self.baseline)
            )
            relabelled[env] = final - self.baseline
        for o, no, a, d, i in self.pending:
            super().add(o, no, a, relabelled, d, i)
        self.pending = []


def truncated_noise(noise: ActionNoise | None) -> TruncatedNormalNoise | None:
    """The agent's exploration noise; SB3 wraps it per environment when there are several (one copy
    samples for all of them, so the schedule and the generator stay one)."""
    if isinstance(noise, VectorizedActionNoise):
        noise = noise.noises[0]
    return noise if isinstance(noise, TruncatedNormalNoise) else None


class SeparateLearningRates:
    """Mixin: the actor learns at ``actor_lr``, the critics (and SAC's entropy coefficient) at ``critic_lr``."""

    actor: Any
    critic: Any

    def __init__(self, *args: Any, actor_lr: float = 1e-4, critic_lr: float = 1e-3, **kwargs: Any) -> None:
        self.actor_lr, self.critic_lr = actor_lr, critic_lr
        super().__init__(*args, learning_rate=critic_lr, **kwargs)

    def _update_learning_rate(self, optimizers) -> None:
        for optimizer in optimizers if isinstance(optimizers, list) else [optimizers]:
            lr = self.actor_lr if optimizer is self.actor.optimizer else self.critic_lr
            for group in optimizer.param_groups:
                group["lr"] = lr


class TruncatedExploration:
    """Mixin for deterministic-policy agents: uniform actions in the warm-up, then AMC's truncated noise."""

    def _sample_action(self, learning_starts: int, action_noise: ActionNoise | None = None, n_envs: int = 1):
        noise = truncated_noise(action_noise)
        if self.num_timesteps < learning_starts or noise is None:
            return super()._sample_action(learning_starts, None, n_envs)  # warm-up: uniform, no noise
        noise.episode = self._episode_num  # SB3 counts finished episodes, and resume restores it
        action, _ = self.predict(self._last_obs, deterministic=True)
        scaled = noise.sample_around(self.policy.scale_action(action))
        return self.policy.unscale_action(scaled), scaled


class AMCDDPG(SeparateLearningRates, TruncatedExploration, DDPG):
    """SB3's DDPG with AMC's exploration, warm-up and separate actor/critic learning rates."""


class AMCTD3(SeparateLearningRates, TruncatedExploration, TD3):
    """SB3's TD3 (twin critics, delayed actor updates, target smoothing) with AMC's exploration and warm-up."""


class AMCSAC(SeparateLearningRates, SAC):
    """SB3's SAC (a stochastic actor explores by its entropy bonus) with AMC's warm-up and reward buffer."""


ALGORITHMS: dict[str, type[OffPolicyAlgorithm]] = {"ddpg": AMCDDPG, "td3": AMCTD3, "sac": AMCSAC}


def build_ddpg(
    env, steps_per_episode: int, cfg: AgentConfig, seed: int, device: str = "cpu", algorithm: str = "ddpg"
) -> OffPolicyAlgorithm:
    """AMC's agent with its hyper-parameters (``conf/agent/ddpg.yaml``); ``env`` may be a VecEnv of workers.

    :param algorithm: ``ddpg`` (AMC's), ``td3`` or ``sac``: the same buffer, warm-up and update schedule.
    """
    n_envs = getattr(env, "num_envs", 1)
    noise = None
    if algorithm != "sac":  # SAC explores through its stochastic policy
        noise = TruncatedNormalNoise(cfg.noise_sigma, cfg.noise_decay, cfg.warmup_episodes, seed=seed)
    hidden = list(cfg.hidden_sizes)
    return ALGORITHMS[algorithm](
        "MlpPolicy",
        env,
        actor_lr=cfg.actor_lr,
        critic_lr=cfg.critic_lr,
        buffer_size=cfg.replay_episodes * steps_per_episode,
        learning_starts=cfg.warmup_episodes * steps_per_episode,
        batch_size=cfg.batch_size,
        tau=cfg.tau,
        gamma=cfg.discount,
        # One update round per episode; with parallel workers, per batch of episodes (SB3 counts steps then).
        train_freq=(1, "episode") if n_envs == 1 else (steps_per_episode, "step"),
        gradient_steps=-1,
        action_noise=noise,
        replay_buffer_class=EpisodeRewardBuffer,
        replay_buffer_kwargs={"baseline_alpha": cfg.baseline_alpha},
        # Adam's multi-tensor update: the same numbers bit for bit as the per-tensor default on CPU, and faster
        # for these small networks (lab notebook, "Memory on a CPU without bfloat16, and a reused least-squares solve").
        policy_kwargs={"net_arch": {"pi": hidden, "qf": hidden}, "optimizer_kwargs": {"foreach": True}},
        seed=seed,
        device=device,
        verbose=0,
    )


# ---------------------------------------------------------------- resumable agent state
BUFFER_FIELDS = ("observations", "next_observations", "actions", "rewards", "dones", "timeouts")


def ddpg_state(agent: OffPolicyAlgorithm) -> tuple[dict[str, torch.Tensor | dict], dict[str, Any]]:
    """(tensors for ``torch.save``, JSON-able scalars) that restore ``agent`` exactly."""
    buffer = agent.replay_buffer
    tensors: dict[str, Any] = {
        "policy": agent.policy.state_dict(),
        "actor_optimizer": agent.actor.optimizer.state_dict(),
        "critic_optimizer": agent.critic.optimizer.state_dict(),
        **{f"buffer.{k}": torch.from_numpy(np.ascontiguousarray(getattr(buffer, k))) for k in BUFFER_FIELDS},
    }
    if getattr(agent, "ent_coef_optimizer", None) is not None:  # SAC's learned entropy coefficient
        tensors["log_ent_coef"] = agent.log_ent_coef.detach().clone()
        tensors["ent_coef_optimizer"] = agent.ent_coef_optimizer.state_dict()
    noise = truncated_noise(agent.action_noise)
    scalars = {
        "num_timesteps": agent.num_timesteps,
        "episode_num": agent._episode_num,
        "n_updates": agent._n_updates,
        "buffer_pos": buffer.pos,
        "buffer_full": buffer.full,
        "baseline": buffer.baseline,
        "noise_rng": noise.rng.bit_generator.state if noise is not None else None,
        "action_space_rng": agent.action_space.np_random.bit_generator.state,
    }
    return tensors, scalars


def load_ddpg_state(agent: OffPolicyAlgorithm, tensors: dict[str, Any], scalars: dict[str, Any]) -> None:
    agent.policy.load_state_dict(tensors["policy"])
    agent.actor.optimizer.load_state_dict(tensors["actor_optimizer"])
    agent.critic.optimizer.load_state_dict(tensors["critic_optimizer"])
    buffer = agent.replay_buffer
    for k in BUFFER_FIELDS:
        getattr(buffer, k)[...] = tensors[f"buffer.{k}"].numpy()
    buffer.pos, buffer.full, buffer.baseline = scalars["buffer_pos"], scalars["buffer_full"], scalars["baseline"]
    agent.num_timesteps, agent._episode_num = scalars["num_timesteps"], scalars["episode_num"]
    agent._n_updates = scalars["n_updates"]
    if "log_ent_coef" in tensors:
        with torch.no_grad():
            agent.log_ent_coef.copy_(tensors["log_ent_coef"])
        agent.ent_coef_optimizer.load_state_dict(tensors["ent_coef_optimizer"])
    noise = truncated_noise(agent.action_noise)
    if noise is not None:
        noise.rng.bit_generator.state = scalars["noise_rng"]
    agent.action_space.np_random.bit_generator.state = scalars["action_space_rng"]
