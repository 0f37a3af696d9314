"""Vector-env wrappers shared by every backend."""

from __future__ import annotations

from typing import Any

import numpy as np
from gymnasium.vector import VectorEnv, VectorWrapper


def success_flags(info: dict[str, Any]) -> np.ndarray | None:
    """``is_success`` of the step each env just took, or None when the env reports no success.

    rlkd's own envs put it in ``info`` directly; Gymnasium's vector envs with SAME_STEP autoreset
    move the ending step's info to ``info["final_info"]``. Envs masked out report False.
    """
    final = info.get("final_info")
    source = final if isinstance(final, dict) and "is_success" in final else info
    if "is_success" not in source:
        return None
    flags = np.asarray(source["is_success"], dtype=bool)
    mask = source.get("_is_success")
    return flags & np.asarray(mask, dtype=bool) if mask is not None else flags


def final_observations(info: dict[str, Any], obs: np.ndarray) -> np.ndarray:
    """The true next observations: ``obs`` with ``info["final_obs"]`` put in where episodes ended."""
    mask = info.get("_final_obs")
    if mask is None or not mask.any():
        return obs
    real = obs.copy()
    real[mask] = np.stack(list(info["final_obs"][mask]))
    return real


class EpisodeStatistics(VectorWrapper):
    """Add ``info["episode"] = {"r": return, "l": length}`` (mask ``info["_episode"]``) on episode ends,
    plus ``"success"`` when the env reports ``is_success``.

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
            success = success_flags(info)
            if success is not None:
                info["episode"]["success"] = success & ended
            info["_episode"] = ended
            self._returns[ended] = 0.0
            self._lengths[ended] = 0
        return obs, rewards, terminations, truncations, info
