"""PPO's networks: the actor-critic (CleanRL's MLPs and Nature CNN, or the RND paper's policy) with
its written-out distributions, the observation normaliser, and the action conversion to the env.

Shapes: observations ``(B, *obs_shape)`` (vectors, or uint8 images channels-first or -last);
actions ``(B,)`` (discrete) or ``(B, A)``; values ``(B,)``.
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from rlkd.nn.nets import (
    Residual,
    channels_last,
    image_chw,
    is_image,
    layer_chain,
    layer_init,
    mlp,
    nature_cnn,
    run_chain,
)
from rlkd.nn.stats import RunningMeanStd


class ActorCritic(nn.Module):
    """Actor with one or two value heads.

    Vector observations: separate tanh MLPs for actor and critic (CleanRL). Images: a CNN trunk
    shared by actor and critics, inputs scaled from uint8 to [0, 1]; ``policy_net`` picks the Nature
    CNN + 512 (CleanRL's ``ppo_atari``) or the RND paper's policy (CleanRL's ``ppo_rnd_envpool.py``).
    Discrete actions: categorical logits. Box actions: Gaussian with state-independent log-std.
    """

    def __init__(
        self, obs_space: gym.spaces.Box, action_space: gym.Space, hidden: int, int_head: bool,
        policy_net: str = "nature",
    ) -> None:  # fmt: skip
        super().__init__()
        shape = tuple(obs_space.shape)
        head_std = 1.0
        if is_image(shape):
            c, h, w = image_chw(shape)
            cnn, size = nature_cnn(c, (h, w))
            if policy_net == "rnd":
                fc = [layer_init(nn.Linear(size, 256)), nn.ReLU(), layer_init(nn.Linear(256, 448)), nn.ReLU()]
                self.trunk: nn.Module = nn.Sequential(cnn, *fc)
                actor_fc = layer_init(nn.Linear(448, 448), std=0.01)
                self.actor_body: nn.Module = nn.Sequential(actor_fc, nn.ReLU())
                extra = nn.Sequential(layer_init(nn.Linear(448, 448), std=0.1), nn.ReLU())
                self.critic_body: nn.Module = Residual(extra)  # values read hidden + extra(hidden)
                features, head_std = 448, 0.01
            else:
                self.trunk = nn.Sequential(cnn, layer_init(nn.Linear(size, 512)), nn.ReLU())
                self.actor_body = nn.Identity()
                self.critic_body = nn.Identity()
                features = 512
        else:
            dim = int(np.prod(shape))
            self.trunk = nn.Flatten()
            self.actor_body = nn.Sequential(mlp([dim, hidden, hidden]), nn.Tanh())
            self.critic_body = nn.Sequential(mlp([dim, hidden, hidden]), nn.Tanh())
            features = hidden
        self.image = is_image(shape)
        self.channels_last = self.image and channels_last(shape)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        if self.discrete:
            self.actor = layer_init(nn.Linear(features, int(action_space.n)), std=0.01)
        else:
            act_dim = int(np.prod(action_space.shape))
            self.actor = layer_init(nn.Linear(features, act_dim), std=0.01)
            self.actor_logstd = nn.Parameter(torch.zeros(1, act_dim))
        self.critic_ext = layer_init(nn.Linear(features, 1), std=head_std)
        self.critic_int = layer_init(nn.Linear(features, 1), std=head_std) if int_head else None

        if self.image:
            # oneDNN's CPU convolutions run faster on channels-last memory: forward and backward of a
            # 512-stack Atari minibatch through the RND paper's policy 246 -> 162 ms (README, Results).
            self.trunk.to(memory_format=torch.channels_last)
        # The call paths of the networks, for run_chain (see there).
        self._trunk_path = layer_chain(self.trunk)
        self._actor_path = layer_chain(self.actor_body, self.actor)
        self._critic_path = layer_chain(self.critic_body)

    def _features(self, x: Tensor) -> Tensor:
        if self.image:  # (B, C, H, W) in channels-last memory, as the trunk's weights (see __init__)
            x = x.permute(0, 3, 1, 2) if self.channels_last else x
            x = x.contiguous(memory_format=torch.channels_last).float().mul_(1.0 / 255.0)
        return run_chain(self._trunk_path, x)

    def values(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, *obs)`` -> extrinsic and intrinsic values ``(B,)`` (intrinsic zeros without a head)."""
        return self._values(self._features(x))

    def _values(self, f: Tensor) -> tuple[Tensor, Tensor]:
        h = run_chain(self._critic_path, f)
        v_ext = self.critic_ext.forward(h).squeeze(-1)
        if self.critic_int is None:
            return v_ext, h.new_zeros(h.shape[0])
        return v_ext, self.critic_int.forward(h).squeeze(-1)

    def _actor_out(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Log-probabilities of every action ``(B, n)`` (discrete) or the Gaussian mean ``(B, d)``; the
        log-std ``(1, d)`` (continuous; else empty); the trunk features."""
        f = self._features(x)
        out = run_chain(self._actor_path, f)
        if self.discrete:
            return out.log_softmax(-1), out.new_empty(0), f
        return out, self.actor_logstd, f

    # The distributions are written out instead of torch.distributions' Categorical and Normal:
    # building those objects (argument handling, logsumexp normalisation, lazy properties) costs
    # more than the small networks' forward pass: acting 1.6-2.2x, the update's scoring 1.3-1.5x
    # faster (bench/bench_distributions.py). Same formulas; tested against torch.distributions.
    def sample(self, x: Tensor, deterministic: bool = False) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Actions for ``(B, *obs)``: action, log-prob ``(B,)``, value_ext, value_int.

        Raises:
            NonFinitePolicy: The distribution's parameters hold NaN/inf (diverged weights).
        """
        out, logstd, f = self._actor_out(x)
        params = out if self.discrete else torch.cat([out, logstd.expand_as(out)], -1)
        if not bool(torch.isfinite(params).all()):
            raise NonFinitePolicy
        if self.discrete:
            # Categorical.sample's draw: the same random numbers for the same probabilities.
            action = out.argmax(-1) if deterministic else torch.multinomial(out.exp(), 1, True).squeeze(-1)
            logp = out.gather(-1, action[:, None]).squeeze(-1)
        else:
            std = logstd.exp().expand_as(out)
            action = out if deterministic else torch.normal(out, std)  # Normal.sample's draw
            logp = gaussian_log_prob(action, out, logstd)
        return (action, logp, *self._values(f))

    def evaluate(self, x: Tensor, action: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Score rollout actions (the update): log-prob, entropy, value_ext, value_int, each ``(B,)``."""
        out, logstd, f = self._actor_out(x)
        if self.discrete:
            logp = out.gather(-1, action[:, None].long()).squeeze(-1)
            # Categorical.entropy: log-probabilities clamped so that 0 * -inf counts as 0.
            ent = -(out.exp() * out.clamp(min=torch.finfo(out.dtype).min)).sum(-1)
        else:
            logp = gaussian_log_prob(action, out, logstd)
            ent = (0.5 + 0.5 * math.log(2 * math.pi) + logstd).sum(-1).expand(out.shape[0])
        return (logp, ent, *self._values(f))


    def inspect(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
        """For run-time monitoring of ``(B, *obs)``: the actor's input to its head ``(B, F)``, the
        mode ``(B, A)`` (one-hot for discrete actions), the categorical entropy ``(B,)`` (None for the
        Gaussian, whose std does not depend on the state) and the extrinsic value ``(B,)``."""
        f = self._features(x)
        h = run_chain(self._actor_path[:-1], f)
        out = self.actor.forward(h)
        if self.discrete:
            logp = out.log_softmax(-1)
            mode = nn.functional.one_hot(out.argmax(-1), out.shape[-1]).float()
            entropy: Tensor | None = -(logp.exp() * logp.clamp(min=torch.finfo(logp.dtype).min)).sum(-1)
        else:
            mode, entropy = out, None
        return h, mode, entropy, self._values(f)[0]


def gaussian_log_prob(action: Tensor, mean: Tensor, logstd: Tensor) -> Tensor:
    """Log-density ``(B,)`` of ``(B, d)`` actions under independent Gaussians with log-std ``(1, d)``,
    summed over ``d``. The log-std terms are summed once, not per row (fewer, smaller ops)."""
    z = (action - mean) * (-logstd).exp()
    return -0.5 * z.square().sum(-1) - (logstd.sum() + 0.5 * math.log(2 * math.pi) * action.shape[-1])


class NonFinitePolicy(ValueError):
    """The policy's action distribution has NaN/inf parameters."""


class ObsNormalizer(nn.Module):
    """Turns raw env observations into network input: images stay uint8, vectors become float32,
    optionally normalized by running statistics (updated only while training)."""

    def __init__(self, obs_space: gym.spaces.Box, normalize: bool) -> None:
        super().__init__()
        self.image = is_image(tuple(obs_space.shape))
        self.rms = RunningMeanStd(tuple(obs_space.shape)) if normalize and not self.image else None

    def forward(self, obs: np.ndarray, device: torch.device, update: bool) -> Tensor:
        x = torch.as_tensor(obs, device=device)
        if self.image:
            return x
        x = x.float()
        if self.rms is None:
            return x
        if update:
            self.rms.update(x)
        return self.rms.normalize(x, clip=10.0).float()


def to_env_action(action: Tensor, action_space: gym.Space) -> np.ndarray:
    """Tensor actions to what the env takes (Gaussian samples clipped to the Box bounds)."""
    a = action.cpu().numpy()
    if isinstance(action_space, gym.spaces.Box):
        return np.clip(a, action_space.low, action_space.high).astype(action_space.dtype)
    return a
