"""Vector-env wrappers shared by every backend."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
from gymnasium import spaces
from gymnasium.vector import VectorEnv, VectorWrapper
from gymnasium.vector.utils import batch_space

from rlkd.errors import UserError, describe_space


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


class ResizeFrames(VectorWrapper):
    """Resize square uint8 RGB frames (N, H, H, 3) to (N, S, S, 3), ``info["final_obs"]`` included.

    Area interpolation (``cv2.INTER_AREA``), which averages the pixels a smaller pixel covers, so
    small objects fade instead of flickering in and out as nearest-neighbour sampling makes them.
    A frame already of side S is passed through untouched.
    """

    def __init__(self, env: VectorEnv, size: int, env_id: str = "the env") -> None:
        super().__init__(env)
        space = env.single_observation_space
        shape = getattr(space, "shape", None)
        if not (isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(shape) == 3
                and shape[0] == shape[1] and shape[2] == 3):  # fmt: skip
            raise UserError(
                f"image size {size} applies to square RGB pixel observations; {env_id} has "
                f"{describe_space(space)}: drop --image-size (or the pixel preset) for this env"
            )
        self.size, self.same = int(size), shape[0] == size
        self.single_observation_space = spaces.Box(0, 255, (size, size, 3), np.uint8)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)

    def _resize(self, frames: np.ndarray) -> np.ndarray:
        if self.same:
            return frames
        out = np.empty((len(frames), self.size, self.size, 3), np.uint8)
        for i, frame in enumerate(frames):
            out[i] = cv2.resize(frame, (self.size, self.size), interpolation=cv2.INTER_AREA)
        return out

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        obs, info = self.env.reset(seed=seed, options=options)
        return self._resize(obs), info

    def step(self, actions):
        obs, rewards, terminations, truncations, info = self.env.step(actions)
        mask = info.get("_final_obs")
        if mask is not None and np.any(mask) and not self.same:
            info = {**info, "final_obs": self._resize_final(info["final_obs"], np.asarray(mask, bool))}
        return self._resize(obs), rewards, terminations, truncations, info

    def _resize_final(self, final: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """``info["final_obs"]`` with the frames of the envs in ``mask`` resized, in the same layout."""
        if final.dtype != object:  # rlkd's native envs and envpool: a batched (N, H, H, 3) array
            return self._resize(final)
        # Gymnasium's sync and async vector envs: an (N,) object array of frames, None where no
        # episode ended. Assigned one by one: numpy would read a list of k frames as one (k, S, S, 3)
        # array and refuse to put it in k object slots.
        out = final.copy()
        idx = np.flatnonzero(mask)
        for i, frame in zip(idx, self._resize(np.stack([final[i] for i in idx])), strict=True):
            out[i] = frame
        return out
