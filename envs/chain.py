"""Lure chain: a sparse-reward corridor with a small, easy reward for giving up near the start.

A hard-exploration task of the project's own, small enough for many seeds on CPU (issue 37): the
agent starts at cell 0 of a chain of ``length`` cells and sees its cell one-hot. Actions: 0 moves
left, 1 moves right, 2 gives up. A move slips to the other direction with probability ``slip``.
Giving up ends the episode and pays ``lure_reward`` when the agent is in one of the first
``lure_cells`` cells (nothing elsewhere); reaching the last cell ends it with reward 1 and
``info["is_success"]`` true. Episodes are truncated after ``max_episode_steps``.

Why it is hard: undirected exploration almost never reaches the far end (a random walk needs about
``length**2`` steps to cover the chain, far beyond the time limit), while the lure is found at once,
so plain PPO learns to give up; a novelty bonus has to keep paying for new cells along the whole
chain, and it must stay larger for a cell visited a few times than for the start cells visited
thousands of times.

Natively vectorized with numpy (Gymnasium ``VectorEnv``, same-step autoreset), like ``envs/reach.py``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

LEFT, RIGHT, GIVE_UP = 0, 1, 2


class LureChainVectorEnv(VectorEnv):
    """``num_envs`` lure chains stepped together.

    Args:
        num_envs: Parallel envs.
        length: Cells in the chain; the goal is the last.
        slip: Probability that a move goes the other way.
        lure_reward: Reward for giving up in one of the first ``lure_cells`` cells.
        lure_cells: How many cells from the start pay the lure.
        max_episode_steps: Episode length limit (truncation).
    """

    metadata: ClassVar[dict[str, Any]] = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(
        self,
        num_envs: int = 1,
        length: int = 60,
        slip: float = 0.1,
        lure_reward: float = 0.05,
        lure_cells: int = 3,
        max_episode_steps: int = 200,
    ) -> None:
        if length < 3:
            raise ValueError(f"length must be at least 3, got {length}")
        if not 0.0 <= slip < 0.5:
            raise ValueError(f"slip must be in [0, 0.5) so that moving right makes progress, got {slip}")
        if not 0 <= lure_cells < length - 1:
            raise ValueError(f"lure_cells must be in [0, length - 1), got {lure_cells}")
        self.num_envs, self.length, self.slip = int(num_envs), int(length), float(slip)
        self.lure_reward, self.lure_cells = float(lure_reward), int(lure_cells)
        self.max_episode_steps = int(max_episode_steps)
        self.single_observation_space = spaces.Box(0.0, 1.0, (self.length,), np.float32)
        self.single_action_space = spaces.Discrete(3)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.pos = np.zeros(self.num_envs, np.int64)
        self.t = np.zeros(self.num_envs, np.int64)
        self._needs_reset = True

    def observe(self) -> np.ndarray:
        """One-hot cells, (N, length) float32."""
        obs = np.zeros((self.num_envs, self.length), np.float32)
        obs[np.arange(self.num_envs), self.pos] = 1.0
        return obs

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Every env back to cell 0; ``seed`` seeds the generator that draws the slips."""
        if options:
            raise ValueError(f"lure chain reset takes no options, got {sorted(options)}")
        super().reset(seed=seed)
        self.pos[:] = 0
        self.t[:] = 0
        self._needs_reset = False
        return self.observe(), {}

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        """Move or give up in every env; envs whose episode ended are reset in the same call."""
        if self._needs_reset:
            raise RuntimeError("call reset() before step()")
        a = np.asarray(actions, np.int64).reshape(self.num_envs)
        if ((a < 0) | (a > 2)).any():
            raise ValueError(f"actions must be 0 (left), 1 (right) or 2 (give up), got {a}")
        give_up = a == GIVE_UP
        direction = np.where(a == RIGHT, 1, -1)
        slipped = self.np_random.random(self.num_envs) < self.slip
        direction = np.where(slipped, -direction, direction)
        self.pos = np.where(give_up, self.pos, np.clip(self.pos + direction, 0, self.length - 1))
        self.t += 1
        success = self.pos == self.length - 1
        lured = give_up & (self.pos < self.lure_cells)
        reward = (success * 1.0 + lured * self.lure_reward).astype(np.float32)
        terminated = success | give_up
        truncated = ~terminated & (self.t >= self.max_episode_steps)
        final_obs = self.observe()
        obs = final_obs
        ended = terminated | truncated
        if ended.any():
            self.pos[ended] = 0
            self.t[ended] = 0
            obs = self.observe()
        info = {"final_obs": final_obs, "_final_obs": ended, "is_success": success,
                "_is_success": np.ones(self.num_envs, bool)}  # fmt: skip
        return obs, reward, terminated, truncated, info


class LureChainEnv(gym.Env):
    """One lure chain: the vector env's code with one env and no autoreset."""

    def __init__(self, **kwargs: Any) -> None:
        self.vec = LureChainVectorEnv(1, **kwargs)
        self.observation_space = self.vec.single_observation_space
        self.action_space = self.vec.single_action_space

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        """Back to cell 0; ``seed`` seeds ``np_random``, which the vector env's code draws from."""
        super().reset(seed=seed)
        self.vec.np_random = self.np_random  # one generator, this env's
        obs, info = self.vec.reset(options=options)
        return obs[0], info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, term, trunc, info = self.vec.step(np.asarray(action)[None])
        if term[0] or trunc[0]:
            self.vec._needs_reset = True  # an ended episode needs reset(), as for any gym.Env
            obs = info["final_obs"]
        success = bool(info["is_success"][0])
        return obs[0], float(reward[0]), bool(term[0]), bool(trunc[0]), {"is_success": success}


def register_chain_envs() -> None:
    """Register ``rlkd/LureChain-v0`` (60 cells, slip 0.1, lure 0.05 in the first 3 cells, 200 steps)."""
    if "rlkd/LureChain-v0" in gym.registry:
        return
    gym.register(
        id="rlkd/LureChain-v0",
        entry_point="rlkd.envs.chain:LureChainEnv",
        vector_entry_point="rlkd.envs.chain:LureChainVectorEnv",
        max_episode_steps=200,
    )
