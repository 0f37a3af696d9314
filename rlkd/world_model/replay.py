"""Sequence replay for online world-model agents: per-env ring buffers, (B, T) windows.

Step t holds observation t, the action that led to it, the reward received on arriving, and the
flags ``is_first``/``is_terminal`` (dreamer-torch layout). Windows may span episode boundaries;
``is_first`` resets the RSSM there (DreamerV3-style). With ``finished_only`` a window never reaches
into the episode still running, as the official code, which only replays episodes once saved.
With ``episode_first`` the window is drawn as the official DisWM code draws it
(``tools.py`` l. 240-255, ``sample_episodes``): an episode uniformly among the finished ones, then
a start uniformly inside it, so windows never cross episodes and short episodes weigh as much as
long ones.
"""

from __future__ import annotations

import ast
import itertools
from typing import Any

import numpy as np
import torch


class Replay:
    """Per-env ring buffers of steps; samples (B, T) windows that never cross the write pointer.

    Args:
        num_envs: Parallel environments (one ring each).
        capacity: Total steps kept, shared equally among environments.
        obs_shape: Shape of one observation, e.g. (64, 64, 3) or (D,).
        obs_dtype: uint8 for pixels, float32 for vectors.
        action_dim: Size of the (continuous) actions.
        seed: Seed of the window sampler.
        finished_only: Sample windows from finished episodes only.
        episode_first: The official sampler: a finished episode first, then a window inside it
            (implies ``finished_only``).
    """

    def __init__(
        self,
        num_envs: int,
        capacity: int,
        obs_shape: tuple[int, ...],
        obs_dtype: Any,
        action_dim: int,
        seed: int,
        finished_only: bool = False,
        episode_first: bool = False,
    ) -> None:
        self.n, self.cap = num_envs, capacity // num_envs
        self.finished_only, self.episode_first = finished_only or episode_first, episode_first
        self.data = {
            "obs": np.zeros((num_envs, self.cap, *obs_shape), obs_dtype),
            "action": np.zeros((num_envs, self.cap, action_dim), np.float32),
            "reward": np.zeros((num_envs, self.cap), np.float32),
            "is_first": np.zeros((num_envs, self.cap), bool),
            "is_terminal": np.zeros((num_envs, self.cap), bool),
        }
        self.ptr = np.zeros(num_envs, np.int64)
        self.filled = np.zeros(num_envs, np.int64)
        # Steps ever added to each ring, and the count at which the running episode began.
        self.added = np.zeros(num_envs, np.int64)
        self.episode_start = np.zeros(num_envs, np.int64)
        self.rng = np.random.default_rng(seed)

    def add(
        self, i: int, obs: np.ndarray, action: np.ndarray, reward: float, first: bool, terminal: bool
    ) -> None:
        """Append one step to env ``i``'s ring."""
        p = self.ptr[i]
        d = self.data
        d["obs"][i, p], d["action"][i, p], d["reward"][i, p] = obs, action, reward
        d["is_first"][i, p], d["is_terminal"][i, p] = first, terminal
        if first:
            self.episode_start[i] = self.added[i]
        self.ptr[i] = (p + 1) % self.cap
        self.filled[i] = min(self.filled[i] + 1, self.cap)
        self.added[i] += 1

    def _usable(self) -> np.ndarray:
        """Kept steps each env may sample from, counted from its oldest kept step, (N,)."""
        if self.finished_only:  # the kept steps before the running episode's first one
            return np.minimum(self.filled, self.episode_start - (self.added - self.filled))
        return self.filled

    def _starts(self, length: int) -> np.ndarray:
        """Number of window starts each env offers, counted from its oldest kept step, (N,)."""
        return np.maximum(self._usable() - length + 1, 0)

    def _episodes(self, length: int) -> list[tuple[int, int, int]]:
        """Finished episodes (env, first kept position from the oldest step, steps) that offer a window.

        The official rule (``tools.sample_episodes``): an episode of ``total`` steps offers starts
        ``0 .. total - length`` and is skipped when ``total - length < 1``.
        """
        found = []
        usable = self._usable()
        for i in range(self.n):
            base = 0 if self.filled[i] < self.cap else self.ptr[i]
            first = self.data["is_first"][i, (base + np.arange(usable[i])) % self.cap]  # ring order
            bounds = [*np.flatnonzero(first), int(usable[i])]
            if bounds[0] != 0:  # an episode whose start the ring has overwritten: keep its rest
                bounds.insert(0, 0)
            found += [(i, a, b - a) for a, b in itertools.pairwise(bounds) if b - a > length]
        return found

    def has_window(self, length: int) -> bool:
        """Whether some env holds at least ``length`` consecutive entries to sample from."""
        if self.episode_first:
            return bool(self._episodes(length))
        return bool(self._starts(length).any())

    def _draw(self, batch: int, length: int) -> tuple[np.ndarray, np.ndarray]:
        """Env (B,) and start offset from its oldest kept step (B,) of each window."""
        if self.episode_first:
            episodes = self._episodes(length)
            if not episodes:
                raise RuntimeError("replay has no finished episode longer than the window yet")
            pick = np.asarray(episodes)[self.rng.integers(len(episodes), size=batch)]  # (B, 3)
            return pick[:, 0], pick[:, 1] + self.rng.integers(0, pick[:, 2] - length + 1)
        starts_per_env = self._starts(length)
        if starts_per_env.sum() == 0:
            raise RuntimeError("replay has no complete window yet")
        env = self.rng.choice(self.n, size=batch, p=starts_per_env / starts_per_env.sum())
        return env, self.rng.integers(0, starts_per_env[env])

    def sample(self, batch: int, length: int, mark_start: bool = True) -> dict[str, np.ndarray]:
        """(B, T) batch of numpy arrays.

        With ``mark_start`` ``is_first`` is True at every window's first step, so the model starts
        it as an episode (zero state, zero action); without it the first step keeps its stored flag
        and action, and only the state starts from zeros (the official code).
        """
        env, k = self._draw(batch, length)
        base = np.where(self.filled[env] < self.cap, 0, self.ptr[env])
        idx = (base[:, None] + k[:, None] + np.arange(length)[None]) % self.cap  # (B, T)
        out = {key: arr[env[:, None], idx] for key, arr in self.data.items()}
        if mark_start:
            out["is_first"][:, 0] = True
        return out

    def state_dict(self) -> dict[str, Any]:
        """Filled part of the buffers as tensors (ring order kept) plus pointers and sampler state."""
        keep = int(self.filled.max())
        return {
            "data": {k: torch.from_numpy(v[:, :keep].copy()) for k, v in self.data.items()},
            "ptr": self.ptr.tolist(), "filled": self.filled.tolist(), "added": self.added.tolist(),
            "episode_start": self.episode_start.tolist(), "rng": repr(self.rng.bit_generator.state),
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""
        for k, v in state["data"].items():
            self.data[k][:, : v.shape[1]] = v.numpy()
        self.ptr[:] = state["ptr"]
        self.filled[:] = state["filled"]
        # Checkpoints written before these counters: the running episode's start is unknown, so
        # treat every kept step as finished.
        self.added[:] = state.get("added", state["filled"])
        self.episode_start[:] = state.get("episode_start", state["filled"])
        self.rng.bit_generator.state = ast.literal_eval(state["rng"])
