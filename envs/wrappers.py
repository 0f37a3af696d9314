"""Vector-env wrappers shared by every backend."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.vector import VectorEnv, VectorWrapper


class EpisodeStatistics(VectorWrapper):
    """Add ``info["episode"] = {"r": return, "l": length}`` (mask ``info["_episode"]``) on episode ends.

    Works with SAME_STEP autoreset: the step that ends an episode reports its statistics, and the
    counters restart for the episode whose first observation that same step returns.

    An inner env may report what a *game* is when it differs from an RL episode: envpool Atari with
    ``episodic_life`` ends an RL episode at every life lost, but people compare whole-game scores
    on unclipped rewards. Such an env puts ``info["raw_reward"]`` and ``info["game_over"]`` in its
    info and the statistics follow those instead of the RL reward and termination.
    """

    def __init__(self, env: VectorEnv) -> None:
        super().__init__(env)
        self._returns = np.zeros(self.num_envs, dtype=np.float64)
        self._lengths = np.zeros(self.num_envs, dtype=np.int64)

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        self._returns[:] = 0.0
        self._lengths[:] = 0
        return self.env.reset(seed=seed, options=options)

    def step(self, actions):
        obs, rewards, terminations, truncations, info = self.env.step(actions)
        self._returns += info.get("raw_reward", rewards)
        self._lengths += 1
        ended = np.asarray(info.get("game_over", np.logical_or(terminations, truncations)), dtype=bool)
        if ended.any():
            info = dict(info)
            info["episode"] = {
                "r": np.where(ended, self._returns, 0.0),
                "l": np.where(ended, self._lengths, 0),
            }
            info["_episode"] = ended
            self._returns[ended] = 0.0
            self._lengths[ended] = 0
        return obs, rewards, terminations, truncations, info
