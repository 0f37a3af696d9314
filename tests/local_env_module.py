"""A user's own envs as a new user writes them: the tests copy this file into a temporary working
folder as ``my_envs.py`` and train on ``my_envs:<id>`` ids (it is never imported from ``tests``).

``Dot``: a 4x4 dot moves on a square arena. Observations are a 64x64x3 uint8 frame (``pixels``) or
the dot's position and the time (``vector``); actions are ``Discrete(5)`` (stay, up, down, left,
right) or a ``Box(-1, 1, (2,))`` move. Every episode lasts ``length`` steps and ends one of two ways,
drawn at reset from the env's generator: by termination (reward +1, ``is_success``) or by
truncation (the env's own time limit). Copies of the env started together end in the same step,
so a vector env sees some envs terminate and others truncate at once.

Registered ids: ``DotPixels-v0``, ``DotPixelsBox-v0``, ``DotVector-v0``, ``DotVectorBox-v0`` (Gymnasium's
sync vector env), and ``DotPixelsAsync-v0``, whose ``vector_entry_point`` is Gymnasium's
``AsyncVectorEnv`` with same-step autoreset.
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.vector import AsyncVectorEnv, AutoresetMode

SIDE = 64
MOVES = np.array([[0, 0], [0, 1], [0, -1], [-1, 0], [1, 0]], np.float64)


class Dot(gym.Env):
    """A dot on a square arena; episodes of ``length`` steps that terminate or truncate."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(
        self, obs: str = "pixels", continuous: bool = False, length: int = 6, render_mode: str | None = None
    ) -> None:
        self.obs_mode, self.length, self.render_mode = obs, length, render_mode
        if obs == "pixels":
            self.observation_space = gym.spaces.Box(0, 255, (SIDE, SIDE, 3), np.uint8)
        else:
            self.observation_space = gym.spaces.Box(0.0, 1.0, (3,), np.float32)
        box = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = box if continuous else gym.spaces.Discrete(5)
        self.pos, self.t, self.ends_by_termination = np.full(2, 0.5), 0, False

    def _obs(self) -> np.ndarray:
        if self.obs_mode == "vector":
            return np.array([*self.pos, self.t / self.length], np.float32)
        return self.render_frame()

    def render_frame(self) -> np.ndarray:
        frame = np.zeros((SIDE, SIDE, 3), np.uint8)
        frame[..., 2] = 30 + 20 * self.t  # the time, so frames differ even where the dot stays
        col, row = (4 + self.pos * (SIDE - 12)).astype(int)
        frame[row : row + 4, col : col + 4] = (255, 220, 40)
        return frame

    def render(self) -> np.ndarray | None:
        return self.render_frame() if self.render_mode == "rgb_array" else None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed)
        self.pos, self.t = self.np_random.uniform(0.2, 0.8, 2), 0
        self.ends_by_termination = bool(self.np_random.integers(2))
        return self._obs(), {}

    def step(self, action):
        move = MOVES[int(action)] if isinstance(self.action_space, gym.spaces.Discrete) else action
        self.pos = np.clip(self.pos + 0.1 * np.clip(np.asarray(move, np.float64), -1, 1), 0.0, 1.0)
        self.t += 1
        ended = self.t >= self.length
        terminated, truncated = ended and self.ends_by_termination, ended and not self.ends_by_termination
        reward = float(terminated) - 0.1 * abs(self.pos[0] - 0.5)
        return self._obs(), reward, terminated, truncated, {"is_success": terminated}


def async_dots(num_envs: int = 1, max_episode_steps: int | None = None, **kwargs: Any) -> AsyncVectorEnv:
    """The vector entry point of ``DotPixelsAsync-v0``: Gymnasium's async vector env of ``Dot``."""
    return AsyncVectorEnv(
        [lambda: Dot(**kwargs) for _ in range(num_envs)], autoreset_mode=AutoresetMode.SAME_STEP
    )


VERSIONS = {
    "DotPixels-v0": {"obs": "pixels"},
    "DotPixelsBox-v0": {"obs": "pixels", "continuous": True},
    "DotVector-v0": {"obs": "vector"},
    "DotVectorBox-v0": {"obs": "vector", "continuous": True},
}
for _id, _kwargs in VERSIONS.items():
    if _id not in gym.registry:
        gym.register(_id, entry_point=Dot, kwargs=_kwargs, max_episode_steps=100)
if "DotPixelsAsync-v0" not in gym.registry:
    gym.register("DotPixelsAsync-v0", entry_point=Dot, vector_entry_point=async_dots, max_episode_steps=100)
