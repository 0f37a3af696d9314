"""Running statistics shared by observation normalization, reward scaling and intrinsic rewards.

Both classes are ``nn.Module``s whose statistics are registered buffers, so they travel in
``state_dict()`` (and therefore in checkpoints) together with the networks that use them.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from rlkd import distributed


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

    @torch.no_grad()
    def update(self, x: Tensor) -> None:
        """Fold a batch ``x`` of shape ``(B, *shape)`` into the statistics."""
        x = x.to(device=self.mean.device, dtype=torch.float64).reshape(-1, *self.mean.shape)
        # In a distributed job every rank folds in the union of all ranks' batches (rlkd.distributed).
        batch_count, batch_mean, batch_var = distributed.merge_moments(
            torch.tensor(float(x.shape[0]), dtype=torch.float64, device=x.device),
            x.mean(dim=0),
            x.var(dim=0, unbiased=False),
        )
        delta = batch_mean - self.mean
        total = self.count + batch_count
        new_mean = self.mean + delta * batch_count / total
        m2 = (
            self.var * self.count
            + batch_var * batch_count
            + delta.square() * self.count * batch_count / total
        )
        self.mean.copy_(new_mean)
        self.var.copy_(m2 / total)
        self.count.copy_(total)

    def normalize(self, x: Tensor, clip: float | None = None, epsilon: float = 1e-8) -> Tensor:
        """Return ``(x - mean) / sqrt(var + eps)``, optionally clipped to ``[-clip, clip]``; no update."""
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

    @torch.no_grad()
    def update(self, rewards: Tensor, dones: Tensor | None = None) -> None:
        """Run the discounted return over ``rewards`` of shape ``(T, N)`` and update the variance.

        Args:
            rewards: Rewards ``(T, N)``, time first.
            dones: Episode-end flags ``(T, N)``; used only when ``episodic`` (the running return is
                zeroed *after* the step that ended the episode).
        """
        rewards = rewards.to(device=self.returns.device, dtype=torch.float64)
        out = torch.empty_like(rewards)
        ret = self.returns.clone()
        for t in range(rewards.shape[0]):
            ret = ret * self.gamma + rewards[t]
            out[t] = ret
            if self.episodic and dones is not None:
                ret = ret * (1.0 - dones[t].to(ret))
        self.returns.copy_(ret)
        self.stats.update(out.reshape(-1))

    def scale(self, rewards: Tensor, epsilon: float = 1e-8) -> Tensor:
        """Divide ``rewards`` by the running std of the discounted return (no mean shift)."""
        return rewards / torch.sqrt(self.stats.var + epsilon).to(rewards.dtype)
