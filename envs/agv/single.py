"""Single AGV warehouse env: the batched simulation with ``N = 1`` and no autoreset."""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from .core import validate_actions
from .vector import AGVWarehouseVectorEnv


class AGVWarehouseEnv(gym.Env):
    """One AGV in a warehouse (see ``AGVWarehouseVectorEnv`` for the arguments).

    It runs exactly the vector env's array code with one env, so for equal seeds and actions
    the single env seeded ``s + i`` and sub-env ``i`` of a vector env seeded ``s`` produce the
    same trajectory. The env truncates itself at ``max_episode_steps`` (the scenario's limit by
    default), which coincides with the ``TimeLimit`` that ``gymnasium.make`` adds.
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 4}

    def __init__(self, scenario: str = "simple-static", **kwargs: Any) -> None:
        # The vector env with one env builds and validates everything (same arguments, same sim).
        vector = AGVWarehouseVectorEnv(1, scenario, **kwargs)
        self.sim, self.scene = vector.sim, vector.scene
        self.render_mode = vector.render_mode
        self.render_size = vector.render_size
        self.observation_space = vector.single_observation_space
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.metadata = {**self.metadata, "render_fps": round(1.0 / self.sim.dt)}
        self._zero = np.zeros(1, dtype=np.int64)
        self._seeded = False
        self._needs_reset = True

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        """Start an episode; ``seed`` makes it (and the following ones) reproducible."""
        if options:
            raise ValueError(f"AGV reset takes no options, got {sorted(options)}")
        super().reset(seed=seed)
        if seed is not None or not self._seeded:
            self.sim.seed(seed, self.np_random)
            self._seeded = True
        self.sim.reset_envs(self._zero)
        self._needs_reset = False
        return self.sim.observe(slice(None))[0], {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        """Apply (forward, turn) command in [-1, 1]^2 (clipped) for one control period."""
        if self._needs_reset:
            raise RuntimeError("call reset() before step()")
        a = validate_actions(action, (2,))
        out = self.sim.step(a[None])
        obs = self.sim.observe(slice(None))[0]
        info = {"is_success": bool(out["success"][0]), "collision": bool(out["collision"][0])}
        return obs, float(out["reward"][0]), bool(out["terminated"][0]), bool(out["truncated"][0]), info

    def set_color_set(self, name: str) -> None:
        """Switch the distractor colour set (``"train"``/``"test"``), now."""
        self.sim.set_color_set(name)

    @property
    def pose(self) -> np.ndarray:
        """Current (x, y, heading), (3,) float64."""
        return np.array([self.sim.x[0], self.sim.y[0], self.sim.theta[0]])

    @property
    def goal(self) -> np.ndarray:
        """Current goal (x, y), (2,) float64."""
        return self.sim.goal[0].copy()

    def render(self) -> np.ndarray | None:  # type: ignore[override]
        """Top-down frame, (render_size, render_size, 3) uint8, or None without a render mode."""
        if self.render_mode is None:
            return None
        return self.sim.render(self._zero, self.render_size)[0]
