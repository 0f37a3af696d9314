"""Running statistics shared by observation normalization, reward scaling and intrinsic rewards.

Both classes are ``nn.Module``s whose statistics are registered buffers, so they travel in
``state_dict()`` (and therefore in checkpoints) together with the networks that use them.
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch
from torch import Tensor, nn

from rlkd.core import distributed
from rlkd.core.moments import chan_merge

T = TypeVar("T", float, np.ndarray, Tensor)


class RunningMeanStd(nn.Module):
    """Running mean and variance over the leading batch axis (parallel algorithm of Chan et al.).

    Args:
        shape: Shape of one sample, e.g. ``(obs_dim,)`` or ``(1, 84, 84)``.
        epsilon: Initial pseudo-count; keeps the first variance finite (as in OpenAI baselines).
    """

    mean: Tensor
    var: Tensor
    count: Tensor

    def __init__(self, shape: tuple[int, ...] = (), epsilon: float = 1e-4) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(shape, dtype=torch.float64))
        self.register_buffer("var", torch.ones(shape, dtype=torch.float64))
        self.register_buffer("count", torch.tensor(epsilon, dtype=torch.float64))

    def update(self, x: Tensor | np.ndarray) -> None:
        """Fold a batch ``x`` of shape ``(B, *shape)`` into the statistics."""
        if not _small_cpu(self.mean, x):  # large batches (images) and other devices: torch
            with torch.no_grad():
                xt = torch.as_tensor(x, device=self.mean.device, dtype=torch.float64)
                xt = xt.reshape(-1, *self.mean.shape)
                n = torch.tensor(float(xt.shape[0]), dtype=torch.float64, device=xt.device)
                batch = n, xt.mean(dim=0), xt.var(dim=0, unbiased=False)
                _merge_into((self.count, self.mean, self.var), batch)
            return
        # Through numpy views of the buffers: the same float64 arithmetic at a third of torch's cost
        # per call on small arrays (observation and reward statistics update at every env step).
        xs = _float64_numpy(x).reshape(-1, *self.mean.shape)
        batch = np.float64(xs.shape[0]), xs.mean(axis=0), xs.var(axis=0)
        if self.mean.dim() == 0:  # scalar statistics (reward scaling): see _update_scalar
            self._update_scalar(batch)
        else:
            _merge_into((self.count.numpy(), self.mean.numpy(), self.var.numpy()), batch)

    def _update_scalar(self, batch: tuple[np.float64, np.float64, np.float64]) -> None:
        """Merge batch moments into scalar statistics in Python floats: the same float64 arithmetic as
        numpy's 0-d arrays, whose per-operation overhead made this merge most of a step's reward scaling."""
        own = float(self.count), float(self.mean), float(self.var)
        merged = chan_merge(*own, *(float(v) for v in distributed.merge_moments(*batch)))
        for buffer, value in zip((self.count, self.mean, self.var), merged, strict=True):
            buffer.fill_(value)

    def normalize(self, x: Tensor, clip: float | None = None, epsilon: float = 1e-8) -> Tensor:
        """Return ``(x - mean) / sqrt(var + eps)``, optionally clipped to ``[-clip, clip]``; no update."""
        if _small_cpu(self.mean, x):  # numpy views (see update); the same float32 arithmetic
            xs = x.detach().numpy()
            dtype = xs.dtype if np.issubdtype(xs.dtype, np.floating) else np.dtype(np.float32)
            std = np.sqrt(self.var.numpy() + epsilon).astype(dtype)
            out = (xs.astype(dtype, copy=False) - self.mean.numpy().astype(dtype)) / std
            return torch.from_numpy(np.clip(out, -clip, clip) if clip is not None else out)
        mean = self.mean.to(x.dtype) if x.is_floating_point() else self.mean.float()
        std = torch.sqrt(self.var + epsilon).to(mean.dtype)
        out = (x.to(mean.dtype) - mean) / std
        return out.clamp(-clip, clip) if clip is not None else out


class DiscountedReturnScaler(nn.Module):
    """Scale rewards by the running std of their discounted return, per environment over time.

    This is the reward normalization of the RND paper (Burda et al. 2018, section 2.4) and of
    PPO's ``VecNormalize``: keep ``R_t = gamma * R_{t-1} + r_t`` separately for each environment,
    feed every ``R_t`` into a running variance and divide rewards by its square root. The
    discounting runs along the time axis of each environment; CleanRL's RND example (issue #360)
    runs it across the environment axis instead, which mixes unrelated streams.

    Args:
        num_envs: Number of parallel environments (columns of the reward array).
        gamma: Discount of the running return.
        episodic: Reset an environment's running return when its episode ends. ``False`` for
            intrinsic rewards, whose return is non-episodic in RND.
    """

    returns: Tensor

    def __init__(self, num_envs: int, gamma: float, episodic: bool) -> None:
        super().__init__()
        self.gamma = gamma
        self.episodic = episodic
        self.register_buffer("returns", torch.zeros(num_envs, dtype=torch.float64))
        self.stats = RunningMeanStd(())

    def update(self, rewards: Tensor | np.ndarray, dones: Tensor | np.ndarray | None = None) -> None:
        """Run the discounted return over ``rewards`` of shape ``(T, N)`` and update the variance.

        Args:
            rewards: Rewards ``(T, N)``, time first.
            dones: Episode-end flags ``(T, N)``; used only when ``episodic`` (the running return is
                zeroed *after* the step that ended the episode).
        """
        if self.returns.is_cpu:  # numpy views, for the per-step cost (see RunningMeanStd.update)
            returns, rewards = self.returns.numpy(), _float64_numpy(rewards)
            dones = _float64_numpy(dones) if dones is not None else None
            self._run_returns(returns, rewards, dones)
        else:
            with torch.no_grad():
                rewards = torch.as_tensor(rewards, device=self.returns.device, dtype=torch.float64)
                if dones is not None:
                    dones = torch.as_tensor(dones, device=rewards.device).to(rewards)
                self._run_returns(self.returns, rewards, dones)

    def _run_returns(self, returns: T, rewards: T, dones: T | None) -> None:
        """``update`` on (N,) running returns and (T, N) rewards and dones, arrays or tensors alike."""
        out = rewards * 0.0
        ret = returns * 1.0
        for t in range(rewards.shape[0]):
            ret = ret * self.gamma + rewards[t]
            out[t] = ret
            if self.episodic and dones is not None:
                ret = ret * (1.0 - dones[t])
        returns[...] = ret
        self.stats.update(out.reshape(-1))

    def scale(self, rewards: T, epsilon: float = 1e-8) -> T:
        """Divide ``rewards`` (a tensor or numpy array) by the running std of the discounted return
        (no mean shift); the std is computed in float64 and rounded to the rewards' dtype."""
        if isinstance(rewards, np.ndarray):
            return rewards / np.sqrt(self.stats.var.numpy(force=True) + epsilon).astype(rewards.dtype)
        return rewards / torch.sqrt(self.stats.var + epsilon).to(rewards.dtype)


def _merge_into(stats: tuple[T, T, T], batch: tuple[T, T, T]) -> None:
    """Fold a batch's (count, mean, var) into the arrays or tensors ``stats``, in place. In a
    distributed job every rank folds in the union of all ranks' batches (rlkd.core.distributed)."""
    merged = chan_merge(*stats, *distributed.merge_moments(*batch))
    for buffer, value in zip(stats, merged, strict=True):
        buffer[...] = value


def _float64_numpy(x: Tensor | np.ndarray) -> np.ndarray:
    return (x.numpy(force=True) if isinstance(x, Tensor) else np.asarray(x)).astype(np.float64, copy=False)


def _small_cpu(stats: Tensor, x: Tensor | np.ndarray) -> bool:
    """Whether statistics and data are on the CPU and small enough (<= 64k numbers) that a call's
    fixed cost, three times lower in numpy than in torch, outweighs torch's threads."""
    on_cpu = stats.is_cpu and (not isinstance(x, Tensor) or x.is_cpu)
    return on_cpu and (x.numel() if isinstance(x, Tensor) else np.size(x)) <= 65536
