"""PPO's rollout storage (CleanRL's ``obs``, ``actions``, ``logprobs``, ... tensors, in one object).

Shapes are ``(T, N, ...)``: ``T = num_steps`` rows of ``N = num_envs`` envs. The buffer owns its
cursor: :meth:`RolloutBuffer.add` writes one vector step's columns and moves to the next row, and
:meth:`RolloutBuffer.flatten` hands the full rollout over as a :class:`Batch`, which serves the
minibatches. In a distributed job every rank stores its own ``N`` envs and the batch serves each
rank its share of every minibatch of the whole job (:meth:`Batch.minibatches`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from rlkd.core.distributed import World


@dataclass
class Minibatch:
    """This rank's samples of one minibatch of the job's rollout (``M`` of them)."""

    obs: Tensor  # (M, *obs_shape)
    actions: Tensor  # (M, *action_shape)
    logprobs: Tensor  # (M,) the rollout's log-probabilities
    advantages: Tensor  # (M,)
    ret_ext: Tensor  # (M,) extrinsic returns
    v_ext: Tensor  # (M,) the rollout's extrinsic values
    ret_int: Tensor  # (M,) intrinsic returns (zeros without an intrinsic module)
    v_int: Tensor  # (M,) the rollout's intrinsic values
    next_obs: Tensor | None  # (M, *obs_shape) the intrinsic module's input, if any
    size: int
    """Samples of the whole job's minibatch (``M`` with one process): the loss's means divide by it."""


@dataclass
class Batch:
    """A rollout flattened to ``B = T * N`` samples of this rank, ready for minibatches."""

    obs: Tensor  # (B, *obs_shape)
    next_obs: Tensor | None  # (B, *obs_shape), the intrinsic module's input
    actions: Tensor  # (B, *action_shape)
    scalars: Tensor  # (6, B): old log-prob, advantage, ext return, ext value, int return, int value
    num_envs: int  # N, this rank's envs
    world: World

    @property
    def job_size(self) -> int:
        """Samples of the whole job's rollout, ``T * N * W`` over ``W`` ranks."""
        return self.scalars.shape[1] * self.world.size

    def minibatches(self, num_minibatches: int, generator: torch.Generator) -> Iterator[Minibatch]:
        """One epoch: a permutation of the job's samples drawn from ``generator`` (the same on every
        rank), cut into ``num_minibatches`` minibatches, each served as this rank's rows of it."""
        size = self.job_size // num_minibatches
        perm = torch.randperm(self.job_size, generator=generator).to(self.obs.device)
        for start in range(0, self.job_size, size):
            rows = self.rows(perm[start : start + size])
            # index_select, not [rows]: the same rows, ~3x faster for image batches and small ones.
            columns = self.scalars.index_select(1, rows)  # one index op for the six scalar columns
            next_obs = None if self.next_obs is None else self.next_obs.index_select(0, rows)
            yield Minibatch(
                self.obs.index_select(0, rows), self.actions.index_select(0, rows), *columns, next_obs, size
            )

    def rows(self, job_rows: Tensor) -> Tensor:
        """This rank's rows of the job's flattened batch: job row ``t*N*W + e`` (env ``e`` of the job)
        is row ``t*N + e - r*N`` of rank ``r = e // N``. With one process: ``job_rows`` itself."""
        if self.world.size == 1:
            return job_rows
        n, size = self.num_envs, self.world.size
        t, env = job_rows // (n * size), job_rows % (n * size)
        mine = env // n == self.world.rank
        return t[mine] * n + env[mine] % n


class RolloutBuffer:
    """One rollout of ``num_steps`` x ``num_envs`` steps; ``t`` is the next row to fill.

    Args:
        num_steps: Rows ``T``.
        num_envs: This rank's envs ``N``.
        obs_shape: One observation's shape.
        image: Whether observations are uint8 images (stored as uint8).
        action_shape: One action's shape (``()`` for discrete actions).
        discrete: Whether actions are integers.
        next_obs: Whether to keep next observations (for an intrinsic module).
        world: The job's ranks.
        device: Where the tensors live (the env scalars stay on the host).
    """

    def __init__(
        self, num_steps: int, num_envs: int, obs_shape: tuple[int, ...], image: bool,
        action_shape: tuple[int, ...], discrete: bool, next_obs: bool, world: World, device: torch.device,
    ) -> None:  # fmt: skip
        T, N = num_steps, num_envs
        self.num_envs, self.world, self.t = num_envs, world, 0
        obs_dtype = torch.uint8 if image else torch.float32
        self.obs = torch.zeros((T, N, *obs_shape), dtype=obs_dtype, device=device)
        self.next_obs = torch.zeros_like(self.obs) if next_obs else None
        act_dtype = torch.long if discrete else torch.float32
        self.actions = torch.zeros((T, N, *action_shape), dtype=act_dtype, device=device)
        self.logprobs, self.v_ext, self.v_int = (torch.zeros((T, N), device=device) for _ in range(3))
        # Rewards, terminated, ended and the bootstrap values of time-limit cuts (4, T, N): the env's
        # per-step numpy output is kept on the host and moved to the device once per rollout.
        self.step_scalars = np.zeros((4, T, N), np.float32)

    @property
    def full(self) -> bool:
        return self.t == len(self.logprobs)

    def add(
        self, obs: Tensor, action: Tensor, logp: Tensor, v_ext: Tensor, v_int: Tensor, reward: np.ndarray,
        terminated: np.ndarray, ended: np.ndarray, boot_ext: np.ndarray, next_obs: Tensor | None,
    ) -> None:  # fmt: skip
        """One vector step's columns at row ``t``, then move to the next row.

        Args:
            obs: ``(N, *obs_shape)`` what the policy saw (after the observation normalizer).
            action: ``(N, *action_shape)`` what it did; ``logp``, ``v_ext``, ``v_int``: ``(N,)``.
            reward: ``(N,)`` the (scaled) extrinsic reward; ``terminated``, ``ended``: ``(N,)`` bool.
            boot_ext: ``(N,)`` ``V(final obs)`` where a time limit cut the episode, else 0.
            next_obs: ``(N, *obs_shape)`` the observation the step led to (kept for an intrinsic module).
        """
        t = self.t
        self.obs[t], self.actions[t], self.logprobs[t] = obs, action, logp
        self.v_ext[t], self.v_int[t] = v_ext, v_int
        rewards, terminated_, ended_, boot = self.step_scalars
        rewards[t], terminated_[t], ended_[t], boot[t] = reward, terminated, ended, boot_ext
        if self.next_obs is not None:
            assert next_obs is not None
            self.next_obs[t] = next_obs
        self.t += 1

    def flatten(self, advantages: Tensor, ret_ext: Tensor, ret_int: Tensor) -> Batch:
        """The rollout with its advantages and returns ``(T, N)`` as ``B = T * N`` samples; the cursor
        goes back to row 0 (the next rollout overwrites this one)."""
        self.t = 0
        size = self.logprobs.numel()
        flat = lambda x: None if x is None else x.reshape(size, *x.shape[2:])  # noqa: E731
        # The per-sample scalars as rows of one tensor: one index op per minibatch instead of six.
        columns = [self.logprobs, advantages, ret_ext, self.v_ext, ret_int, self.v_int]
        scalars = torch.stack([c.reshape(-1) for c in columns])
        obs, next_obs, actions = flat(self.obs), flat(self.next_obs), flat(self.actions)
        return Batch(obs, next_obs, actions, scalars, self.num_envs, self.world)
