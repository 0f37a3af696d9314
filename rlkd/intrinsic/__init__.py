"""Intrinsic-reward modules: Random Network Distillation (RND) and Random Distribution Distillation (RDD).

Both modules share one small interface (:class:`IntrinsicModule`) that agents code against:

- :meth:`~IntrinsicModule.bonus` maps a batch of raw next observations to a raw bonus, with no side
  effects (no statistic updates, no random numbers drawn), so it is safe during rollouts and evaluation;
- :meth:`~IntrinsicModule.normalize_rewards` scales a rollout's ``(T, N)`` bonuses by the running std of
  the non-episodic discounted intrinsic return (RND paper, section 2.4) and is the only place that updates
  reward statistics;
- :meth:`~IntrinsicModule.loss` is the predictor's distillation loss on a minibatch; gradients reach the
  predictor only, the random target is frozen;
- observation statistics (``obs_rms``) and reward statistics (``reward_scaler``) are buffers, so they are
  part of ``state_dict()`` and of every checkpoint.

References:
    Burda, Edwards, Storkey, Klimov. "Exploration by Random Network Distillation", ICLR 2019,
    arXiv:1810.12894 (RND), and its reference code github.com/openai/random-network-distillation.
    Fang, Yang, Tao, Lyu, Li, Shen, Li. "Exploration by Random Distribution Distillation", 2025,
    arXiv:2505.11044 (RDD).

Example:
    >>> module = make_intrinsic("rnd", envs.single_observation_space, num_envs=8)
    >>> module.init_obs_stats(random_agent_obs)                   # (B, *obs_shape)
    >>> raw = module.bonus(next_obs)                               # (N,) per step of a rollout
    >>> scaled = module.normalize_rewards(raw_rollout)             # (T, N) at rollout end
    >>> module.update_obs_stats(rollout_next_obs.flatten(0, 1))
    >>> loss = module.loss(minibatch_next_obs)["predictor"]        # in the PPO update
"""

from __future__ import annotations

import dataclasses
import difflib
from abc import ABC, abstractmethod
from typing import Any

import gymnasium
import numpy as np
import torch
from torch import Tensor, nn

from rlkd.core import distributed
from rlkd.errors import describe_space
from rlkd.nn.nets import channels_last, mlp, nature_cnn
from rlkd.nn.returns import gae
from rlkd.nn.stats import DiscountedReturnScaler, RunningMeanStd

__all__ = [
    "INTRINSIC_NAMES",
    "RDD",
    "RND",
    "IntrinsicModule",
    "make_intrinsic",
]

INTRINSIC_NAMES: tuple[str, ...] = ("none", "rnd", "rdd")

#: Normalized observations are clipped to this range (RND paper, section 2.4: "clip ... between -5 and 5").
OBS_CLIP = 5.0


# --------------------------------------------------------------------------------------------------------
# Observation layout
# --------------------------------------------------------------------------------------------------------


def _pixel_layout(shape: tuple[int, ...], frame_channels: int | None) -> tuple[bool, int]:
    """Decide how to read a rank-3 pixel observation.

    Returns:
        ``(channels_last, keep)``: whether the channel axis is last, and how many trailing channels
        (the most recent frame) to keep.
    """
    last = channels_last(shape)
    channels = shape[2] if last else shape[0]
    if frame_channels is None:
        # RND feeds the networks only the last frame of a stack (paper, appendix). A stack of RGB
        # frames has a channel count divisible by 3; grayscale stacks (Atari: 4) keep one channel.
        if channels in (1, 3):
            frame_channels = channels
        elif channels % 3 == 0:
            frame_channels = 3
        else:
            frame_channels = 1
    if not 1 <= frame_channels <= channels:
        raise ValueError(f"frame_channels={frame_channels} must be between 1 and the {channels} channels")
    return last, frame_channels


class _ObsAdapter:
    """Turns raw observations ``(B, *obs_shape)`` into network inputs ``(B, *input_shape)`` (float32)."""

    def __init__(self, obs_space: gymnasium.Space, frame_channels: int | None = None) -> None:
        supported = (
            "supported observation spaces: Box of shape (D,) (vectors), or uint8 Box of shape (C, H, W) "
            "(channel-first, e.g. Atari (4, 84, 84) frame stacks) or (H, W, C) (channel-last RGB)"
        )
        if not isinstance(obs_space, gymnasium.spaces.Box):
            raise ValueError(
                f"intrinsic rewards cannot handle observation space {describe_space(obs_space)}; "
                f"{supported}. "
                "Flatten Dict/Tuple observations or one-hot encode Discrete ones with a wrapper first."
            )
        self.obs_shape: tuple[int, ...] = tuple(obs_space.shape)
        if len(self.obs_shape) == 1:
            self.pixels = False
            self.input_shape: tuple[int, ...] = self.obs_shape
            self.channels_last, self.keep = False, 0
        elif len(self.obs_shape) == 3:
            self.pixels = True
            self.channels_last, self.keep = _pixel_layout(self.obs_shape, frame_channels)
            h, w = self.obs_shape[:2] if self.channels_last else self.obs_shape[1:]
            self.input_shape = (self.keep, h, w)
        else:
            raise ValueError(
                f"intrinsic rewards cannot handle a Box of shape {self.obs_shape} "
                f"(rank {len(self.obs_shape)}); {supported}"
            )

    def __call__(self, obs: Tensor) -> Tensor:
        if tuple(obs.shape[1:]) != self.obs_shape:
            raise ValueError(f"expected observations of shape (B, {self.obs_shape}), got {tuple(obs.shape)}")
        if self.pixels and self.channels_last:
            obs = obs[..., -self.keep :].permute(0, 3, 1, 2)  # (B, H, W, C) -> (B, keep, H, W)
        elif self.pixels:
            obs = obs[:, -self.keep :]  # (B, C, H, W) -> (B, keep, H, W): the most recent frame
        return obs.float()


# --------------------------------------------------------------------------------------------------------
# Networks
# --------------------------------------------------------------------------------------------------------


def _networks(
    input_shape: tuple[int, ...], pixels: bool, hidden: int, output_dim: int
) -> tuple[nn.Module, nn.Module]:
    """RND's target and its deeper predictor; every layer orthogonal with gain sqrt(2), zero bias.

    Pixels (RND paper, appendix A.4): 3 convs 32/64/64 (kernels 8/4/3, strides 4/2/1, leaky ReLU), then a
    linear output for the target and two more 512-wide ReLU layers before it for the predictor.
    Vectors: leaky-ReLU MLPs with two hidden layers for the target and three for the predictor.
    """
    if pixels:
        c, h, w = input_shape

        def conv_net(extra_layers: int) -> nn.Module:
            trunk, flat = nature_cnn(c, (h, w), nn.LeakyReLU)
            return nn.Sequential(trunk, mlp([flat] + [512] * extra_layers + [output_dim], nn.ReLU))

        return conv_net(0), conv_net(2)
    d = input_shape[0]
    return (
        mlp([d, hidden, hidden, output_dim], nn.LeakyReLU),
        mlp([d, hidden, hidden, hidden, output_dim], nn.LeakyReLU),
    )


# --------------------------------------------------------------------------------------------------------
# Base class
# --------------------------------------------------------------------------------------------------------


class IntrinsicModule(nn.Module, ABC):
    """Shared machinery of distillation bonuses: observation handling, statistics, target and predictor.

    The base class builds ``target`` (frozen) and ``predictor`` (trained) from the observation space
    and owns :meth:`loss`; subclasses define :meth:`bonus` and the per-sample distillation loss
    :meth:`_distill`.

    Args:
        obs_space: The *single-environment* observation space.
        num_envs: Number of parallel environments (columns of the rollout's bonus array).
        gamma_int: Discount of the running intrinsic return used for reward scaling.
        update_proportion: Fraction of each minibatch the predictor trains on; None applies the RND
            paper's rule (:func:`rnd_update_proportion`).
        output_dim: Embedding size of target and predictor.
        frame_channels: For pixel observations, how many trailing channels form the most recent frame
            (default: guessed, 1 for grayscale stacks, 3 for RGB).
    """

    obs_rms: RunningMeanStd
    reward_scaler: DiscountedReturnScaler
    target: nn.Module
    predictor: nn.Module
    default_vector_dim: int

    def __init__(
        self,
        obs_space: gymnasium.Space,
        num_envs: int,
        *,
        gamma_int: float = 0.99,
        update_proportion: float | None = None,
        output_dim: int | None = None,
        hidden: int = 256,
        frame_channels: int | None = None,
    ) -> None:
        super().__init__()
        if update_proportion is None:
            update_proportion = rnd_update_proportion(num_envs)
        if not 0.0 < update_proportion <= 1.0:
            raise ValueError(f"update_proportion must be in (0, 1], got {update_proportion}")
        if num_envs < 1:
            raise ValueError(f"num_envs must be positive, got {num_envs}")
        self.adapter = _ObsAdapter(obs_space, frame_channels)
        self.update_proportion = float(update_proportion)
        self.output_dim = int(output_dim or (512 if self.adapter.pixels else self.default_vector_dim))
        self.target, self.predictor = _networks(
            self.adapter.input_shape, self.adapter.pixels, hidden, self.output_dim
        )
        self._freeze_target()
        if self.adapter.pixels:  # channels-last memory for oneDNN's convolutions (see PPO's ActorCritic)
            self.target.to(memory_format=torch.channels_last)
            self.predictor.to(memory_format=torch.channels_last)
        # Per-pixel statistics for images, per-feature for vectors (RND paper, section 2.4).
        self.obs_rms = RunningMeanStd(self.adapter.input_shape)
        # Intrinsic returns are non-episodic (RND paper, section 2.3), so is the return used for scaling.
        self.reward_scaler = DiscountedReturnScaler(num_envs, gamma_int, episodic=False)
        self._last_metrics: dict[str, float] = {}

    # ---- subclasses ---------------------------------------------------------------------------------

    def _freeze_target(self) -> None:
        # The target is never trained: no gradients, never in an optimizer, always in eval mode.
        for p in self.target.parameters():
            p.requires_grad_(False)
        self.target.eval()

    def train(self, mode: bool = True) -> IntrinsicModule:
        """Set train/eval mode of the predictor; the target always stays in eval mode."""
        super().train(mode)
        self.target.eval()
        return self

    @abstractmethod
    def bonus(self, next_obs: Tensor) -> Tensor:
        """Raw (unscaled) bonus ``(B,)`` for raw observations ``(B, *obs_shape)``; no side effects."""

    @abstractmethod
    def _distill(self, x: Tensor) -> tuple[Tensor, dict[str, float]]:
        """Per-sample predictor loss ``(B,)`` on normalized inputs, and diagnostics to log."""

    def loss(self, next_obs: Tensor | np.ndarray) -> dict[str, Tensor]:
        """Predictor loss ``{"predictor": scalar}`` on a random ``update_proportion`` of the raw
        observations ``(B, *obs_shape)``; gradients reach only the predictor."""
        obs = self._as_tensor(next_obs)
        # RND reference: each sample enters the loss with probability update_proportion (a Bernoulli
        # mask, not a fixed-size subset). Only the kept rows are normalized and go through the
        # networks: the same loss as masking the full batch, at a quarter of the compute.
        keep = torch.rand(obs.shape[0], device=obs.device) < self.update_proportion
        kept_obs = obs.index_select(0, keep.nonzero().squeeze(1))  # = obs[keep], faster on images
        per_sample, metrics = self._distill(self.normalize_obs(kept_obs))
        self._last_metrics = {"update_fraction": float(keep.float().mean()), **metrics}
        # The mean over the kept rows of every rank of a distributed job (one process: this batch's).
        # An empty draw still returns a (zero) loss attached to the predictor's graph.
        kept = keep.sum().reshape(1).float()
        distributed.all_reduce_([kept])
        return {"predictor": per_sample.sum() / kept.clamp(min=1.0)[0]}

    def metrics(self) -> dict[str, float]:
        """Diagnostics of the last :meth:`loss` call, to log under ``intrinsic/``."""
        return dict(self._last_metrics)

    # ---- observations -------------------------------------------------------------------------------

    @property
    def device(self) -> torch.device:
        return self.obs_rms.mean.device

    def _as_tensor(self, obs: Tensor | np.ndarray) -> Tensor:
        return torch.as_tensor(obs, device=self.device)

    def normalize_obs(self, obs: Tensor | np.ndarray) -> Tensor:
        """Raw ``(B, *obs_shape)`` -> normalized, clipped network input ``(B, *input_shape)`` (float32)."""
        x = self.obs_rms.normalize(self.adapter(self._as_tensor(obs)), clip=OBS_CLIP).float()
        return x.contiguous(memory_format=torch.channels_last) if self.adapter.pixels else x

    @torch.no_grad()
    def update_obs_stats(self, obs: Tensor | np.ndarray) -> None:
        """Fold a batch of observations ``(B, *obs_shape)`` (e.g. a rollout's next obs) into ``obs_rms``."""
        self.obs_rms.update(self.adapter(self._as_tensor(obs)))

    def init_obs_stats(self, obs: Tensor | np.ndarray) -> None:
        """Fold observations ``(B, *obs_shape)`` collected by a random agent into ``obs_rms``.

        The RND paper (section 2.4) initializes the normalization parameters by stepping a random agent
        for a small number of steps before training; this is that explicit step (constructors never step
        an environment). May be called several times with chunks.
        """
        self.update_obs_stats(obs)

    # ---- rewards ------------------------------------------------------------------------------------

    @torch.no_grad()
    def normalize_rewards(self, bonuses: Tensor) -> Tensor:
        """Scale raw bonuses ``(T, N)`` by the running std of the discounted intrinsic return.

        Updates ``reward_scaler`` first (non-episodic, per environment along time), then divides; this is
        the only method that updates reward statistics. ``T = 1`` is fine for step-by-step use.
        """
        num_envs = self.reward_scaler.returns.shape[0]
        if bonuses.ndim != 2 or bonuses.shape[1] != num_envs:
            raise ValueError(f"expected bonuses of shape (T, {num_envs}), got {tuple(bonuses.shape)}")
        # Statistics live on the module's device; return on the caller's device.
        on_device = bonuses.to(self.device)
        self.reward_scaler.update(on_device)
        return self.reward_scaler.scale(on_device).to(bonuses.device)

    # ---- the intrinsic stream of a rollout ----------------------------------------------------------

    @torch.no_grad()
    def rollout(self, next_obs: Tensor, values: Tensor, last_value: Tensor, gae_lambda: float) -> Stream:
        """The intrinsic half of a rollout: bonuses, their scaling, and the non-episodic return.

        Args:
            next_obs: ``(T, N, *obs_shape)``, the observation each step led to (at an episode end the
                next episode's first, where the non-episodic stream continues: the RND code's rule).
            values: ``(T, N)`` intrinsic value estimates of the rollout's observations.
            last_value: ``(N,)`` intrinsic value of the observation after the rollout.
            gae_lambda: GAE lambda.

        Returns:
            A :class:`Stream`. The return ignores episode ends: no termination, no truncation cut
            (RND paper, section 2.3), discounted by ``gamma_int``. Updates the reward statistics, then
            the observation statistics (with the rollout's observations, after they were scored).
        """
        T, N = values.shape
        flat = next_obs.reshape(T * N, *next_obs.shape[2:])
        # In chunks: the same values, at a fraction of the peak memory (and page faults).
        raw = torch.cat([self.bonus(c) for c in flat.split(256)]).reshape(T, N)
        rewards = self.normalize_rewards(raw)
        self.update_obs_stats(flat)
        next_values = torch.cat([values[1:], last_value[None]])
        never = torch.zeros_like(rewards)
        advantages = gae(rewards, values, next_values, never, never, self.reward_scaler.gamma, gae_lambda)
        return Stream(raw, rewards, advantages, advantages + values)


@dataclasses.dataclass
class Stream:
    """The intrinsic stream of one rollout, each ``(T, N)``."""

    raw_bonus: Tensor
    rewards: Tensor  # scaled by the running std of the intrinsic return
    advantages: Tensor
    returns: Tensor


# --------------------------------------------------------------------------------------------------------
# RND
# --------------------------------------------------------------------------------------------------------


class RND(IntrinsicModule):
    """Random Network Distillation (Burda et al. 2018, arXiv:1810.12894).

    A frozen random ``target`` embeds the normalized next observation; a deeper ``predictor`` regresses
    it on visited states, and the prediction error is the bonus.

    Bonus convention: mean squared error over the output axis, as the reference code
    (``tf.reduce_mean(tf.square(...), axis=-1)``); CleanRL uses sum/2 instead. The two differ by the
    constant factor ``output_dim / 2``, which the return-std reward normalization removes.

    Networks: pixels use the paper's convs (target: convs -> linear 512; predictor: convs -> two extra
    512 ReLU layers -> linear 512); vectors use MLPs with leaky ReLU, 2 x ``hidden`` for the target and
    3 x ``hidden`` for the predictor (the predictor is deliberately the more expressive of the two).
    """

    default_vector_dim = 128

    def _errors(self, x: Tensor) -> Tensor:
        """Per-sample mean squared prediction error ``(B,)`` for normalized inputs ``x``."""
        with torch.no_grad():
            target = self.target(x)  # (B, output_dim)
        return (self.predictor(x) - target).square().mean(dim=-1)

    @torch.no_grad()
    def bonus(self, next_obs: Tensor | np.ndarray) -> Tensor:
        """Raw bonus ``(B,)``: mean over the output axis of the squared prediction error."""
        return self._errors(self.normalize_obs(next_obs))

    def _distill(self, x: Tensor) -> tuple[Tensor, dict[str, float]]:
        errors = self._errors(x)  # (B,)
        if not errors.numel():
            return errors, {}
        detached = errors.detach()
        return errors, {
            "batch_bonus_mean": float(detached.mean()),
            "batch_bonus_std": float(detached.std(unbiased=False)),
        }


# --------------------------------------------------------------------------------------------------------
# RDD
# --------------------------------------------------------------------------------------------------------


class RDD(IntrinsicModule):
    """Random Distribution Distillation (Fang et al. 2025, arXiv:2505.11044).

    The target of a state is a *distribution*, N(mu(s) + m, sigma^2 I), where ``mu`` is a frozen random
    network and ``m`` a constant mean offset; every time the predictor trains on a state it regresses a
    fresh sample of it (paper, method section: "each time a target output f_tar(s) is sampled from this
    distribution"). The paper's implementation fixes the variance to one sigma^2 for all states instead
    of a second random network sigma(s). The bonus is measured against the distribution's *mean*
    (paper, eq. 11)::

        b(s) = || f_theta(s) - (mu(s) + m) ||^2 / d

    A predictor converged on ``n`` samples of ``s`` outputs their empirical mean, so ``b(s) / sigma^2``
    estimates ``1 / n`` (Lemma 4.1: this z_n is an unbiased, consistent estimator of 1/n). For a predictor
    that is not converged, b is bounded by a pseudo-count term sigma^2 / n plus a discrepancy term
    || f*_n(s) - f_theta(s) ||^2 (section 4.4), which is how RDD unifies count-based and prediction-error
    exploration. :meth:`metrics` logs these quantities for the last training minibatch. (Quotes,
    equation, lemma and section numbers as the paper is quoted by others: see below.)

    Where each default comes from (details and the status of every source: docs/exploration.md, "RDD's
    defaults"). The paper's text beyond its abstract and introduction, and any official RDD code, could
    not be read when these sources were checked (2026-12), so no value below is claimed as the paper's
    from a reading of it; "reported" means a third-party summary of the paper says so.

    - ``sigma = 1`` and ``target_mean = 1``: reported as the paper's (its section 5.4 ablates both;
      with mean 1 an unseen state starts with a bonus near 1). One sigma for all states instead of a
      second random network sigma(s): reported as the paper's implementation choice.
    - ``output_dim``: 512 for pixels (RND's size; reported as RDD's on Atari); 64 for vectors, reported
      as the paper's but not verified. Kept by measurement (issue 37, docs/exploration.md): on the
      project's lure chain no output size 32-256 (nor sigma 0.1-1) beat it; offset ``m = 0`` did
      (5/5 seeds against 0/5) but cost AGV success (0.74 against 0.87), so ``m = 1`` stays too
      (bench/results/exploration_rdd/decision.md).
    - ``hidden = 256`` (vector MLPs): rlkd's choice, not the paper's (reported: 64). A width of 64 was
      tried first: on the sparse AGV complex-static scene its predictor generalised so smoothly that
      the bonus barely told visited from unvisited poses, and PPO+RDD never learned to leave the
      start aisle in 400k steps (with 256 it does; bench/bench_exploration.py).
    - Reward normalisation (running std of the non-episodic intrinsic return), observation
      normalisation and clipping, ``update_proportion`` (the RND rule) and ``gamma_int = 0.99``: RND's
      (paper section 2.4, reference code), kept for RDD; what the RDD paper uses for these is not
      verified.

    Args:
        obs_space: Single-environment observation space.
        num_envs: Number of parallel environments.
        gamma_int: Discount of the running intrinsic return used for reward scaling.
        update_proportion: Fraction of each minibatch the predictor trains on.
        output_dim: Embedding size (default 64 for vectors, 512 for pixels).
        sigma: Standard deviation of the target distribution (default 1).
        target_mean: Constant offset ``m`` added to ``mu(s)`` (default 1).
        hidden: Hidden width of the vector MLPs (default 256).
        frame_channels: See :class:`IntrinsicModule`.
    """

    default_vector_dim = 64

    def __init__(
        self,
        obs_space: gymnasium.Space,
        num_envs: int,
        *,
        sigma: float = 1.0,
        target_mean: float = 1.0,
        **kwargs: Any,
    ) -> None:
        if sigma <= 0.0:
            raise ValueError(f"rdd sigma must be positive, got {sigma}")
        # ``target`` is the mean network mu; same architectures as RND (the paper builds on RND's code).
        super().__init__(obs_space, num_envs, **kwargs)
        self.sigma = float(sigma)
        self.target_mean = float(target_mean)

    def _mean(self, x: Tensor) -> Tensor:
        """Mean of the target distribution, ``mu(s) + m``, shape ``(B, d)``."""
        with torch.no_grad():
            return self.target(x) + self.target_mean

    @torch.no_grad()
    def bonus(self, next_obs: Tensor | np.ndarray) -> Tensor:
        """Raw bonus ``(B,)``: ``||f_theta(s) - mean(s)||^2 / d`` (paper, eq. 11); draws no random numbers."""
        x = self.normalize_obs(next_obs)
        return (self.predictor(x) - self._mean(x)).square().mean(dim=-1)

    def _distill(self, x: Tensor) -> tuple[Tensor, dict[str, float]]:
        """MSE to a fresh target sample ``mean(s) + sigma * eps``."""
        mean = self._mean(x)  # (B, d)
        sample = mean + self.sigma * torch.randn_like(mean)  # a new draw every time s is trained on
        pred = self.predictor(x)  # (B, d)
        per_sample = (pred - sample).square().mean(dim=-1)  # (B,)
        if not per_sample.numel():
            return per_sample, {}
        with torch.no_grad():
            # Discrepancy to the mean = the bonus on this minibatch; divided by sigma^2 it is the
            # statistic z of Lemma 4.1, an estimate of 1/n, so sigma^2 / b reads as a pseudo-count.
            discrepancy = (pred - mean).square().mean(dim=-1)  # (B,)
            z = discrepancy / self.sigma**2
            metrics = {
                "batch_bonus_std": float(discrepancy.std(unbiased=False)),
                "batch_bonus_max": float(discrepancy.max()),
                "predictor_vs_mean_discrepancy": float(discrepancy.mean()),
                "inverse_pseudo_count": float(z.mean()),
                "pseudo_count": float((1.0 / z.clamp(min=1e-8)).median()),
                # E||f - sample||^2/d = b + sigma^2 for a predictor independent of the draw: the gap between
                # the loss and the bonus should hover around sigma^2.
                "loss_minus_bonus": float((per_sample.detach() - discrepancy).mean()),
            }
        return per_sample, metrics


# --------------------------------------------------------------------------------------------------------
# Factory
# --------------------------------------------------------------------------------------------------------


def rnd_update_proportion(num_envs: int) -> float:
    """The RND rule for the predictor's share of the experience: ``min(1, 32 / num_envs)``.

    Training the predictor on a random 32 / num_envs of the data keeps its update rate fixed as the
    number of parallel environments grows. Both references satisfy it: the RND code's defaults are
    32 envs and proportion 1.0 (``run_atari.py``: ``--num_env 32``,
    ``--proportion_of_exp_used_for_predictor_update 1.``), CleanRL's ``ppo_rnd_envpool.py`` uses
    128 envs and 0.25 (``num_envs: int = 128``, ``update_proportion: float = 0.25``).
    """
    return min(1.0, 32.0 / num_envs)


def make_intrinsic(
    name: str,
    obs_space: gymnasium.Space,
    num_envs: int,
    *,
    gamma_int: float = 0.99,
    update_proportion: float | None = None,
    output_dim: int | None = None,
    rdd_sigma: float | None = None,
    rdd_target_mean: float | None = None,
    device: str | torch.device = "cpu",
    frame_channels: int | None = None,
) -> IntrinsicModule | None:
    """Build an intrinsic-reward module by name.

    Args:
        name: One of :data:`INTRINSIC_NAMES`; ``"none"`` returns ``None``.
        obs_space: Single-environment observation space (Box of rank 1, or a rank-3 pixel Box).
        num_envs: Number of parallel environments.
        gamma_int: Intrinsic discount (RND paper: 0.99).
        update_proportion: Fraction of each minibatch used to train the predictor; None: the RND
            rule, :func:`rnd_update_proportion`.
        output_dim: Embedding size; default 512 for pixels, 128 (RND) or 64 (RDD) for vectors.
        rdd_sigma: RDD target standard deviation (default 1.0); ignored by RND.
        rdd_target_mean: RDD target mean offset m (default 1.0); ignored by RND.
        device: Device of the module.
        frame_channels: Channels of the most recent frame in pixel observations (default: guessed).

    Raises:
        ValueError: Unknown name (with the closest valid name) or unsupported observation space.
    """
    if name not in INTRINSIC_NAMES:
        close = difflib.get_close_matches(str(name).lower(), INTRINSIC_NAMES, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"unknown intrinsic module {name!r}; valid names: {', '.join(INTRINSIC_NAMES)}.{hint}"
        )
    if name == "none":
        return None
    module: IntrinsicModule
    if name == "rnd":
        module = RND(
            obs_space,
            num_envs,
            gamma_int=gamma_int,
            update_proportion=update_proportion,
            output_dim=output_dim,
            frame_channels=frame_channels,
        )
    else:
        module = RDD(
            obs_space,
            num_envs,
            gamma_int=gamma_int,
            update_proportion=update_proportion,
            output_dim=output_dim,
            sigma=1.0 if rdd_sigma is None else rdd_sigma,
            target_mean=1.0 if rdd_target_mean is None else rdd_target_mean,
            frame_channels=frame_channels,
        )
    return module.to(device)
