"""Generalized advantage estimation (Schulman et al. 2016), shared by every on-policy agent."""

from __future__ import annotations

import torch
from torch import Tensor


def gae(
    rewards: Tensor,
    values: Tensor,
    next_values: Tensor,
    terminated: Tensor,
    episode_end: Tensor,
    gamma: float,
    lam: float,
) -> Tensor:
    """Advantages ``A_t = sum_k (gamma*lam)^k delta_{t+k}`` along time, per environment.

    ``delta_t = r_t + gamma * (1 - terminated_t) * next_values_t - values_t``, and the sum stops at
    ``episode_end`` (termination *or* truncation). Keeping the two flags apart is what makes
    truncation bootstrapping right: a truncated step still adds ``gamma * V(final_obs)``, the
    value of the state the time limit cut off, but the advantage does not leak into the next
    episode. For non-episodic streams (RND's intrinsic return) pass zeros for both flags.

    Args:
        rewards: ``(T, N)`` rewards of the transitions.
        values: ``(T, N)`` values ``V(s_t)`` of the observations the actions were taken in.
        next_values: ``(T, N)`` values of the *true* next observations: ``V(s_{t+1})``, and at an
            episode end ``V(final_obs)`` (only used when truncated, terminated ones are zeroed).
        terminated: ``(T, N)`` 1.0 where the transition ended in a terminal state.
        episode_end: ``(T, N)`` 1.0 where the episode ended (terminated or truncated).
        gamma: Discount factor.
        lam: GAE lambda.

    Returns:
        ``(T, N)`` advantages; returns are ``advantages + values``.
    """
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[0])
    deltas = rewards + gamma * (1.0 - terminated) * next_values - values
    carry = gamma * lam * (1.0 - episode_end)
    for t in range(rewards.shape[0] - 1, -1, -1):
        last = deltas[t] + carry[t] * last
        advantages[t] = last
    return advantages
