"""Natively vectorized AGV warehouse env (Gymnasium ``VectorEnv``, same-step autoreset)."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from .core import AGVSim, validate_actions
from .maps import WarehouseMap, get_scenario


def make_sim(
    num_envs: int, scenario: str, custom_map: WarehouseMap | None, kwargs: dict[str, Any]
) -> tuple[AGVSim, WarehouseMap]:
    """Build the batched simulation from a scenario name or a custom map.

    Args:
        num_envs: Number of envs.
        scenario: Built-in scenario name (ignored when ``custom_map`` is given).
        custom_map: Explicit map, e.g. for tests or user layouts.
        kwargs: Remaining ``AGVSim`` keyword arguments.

    Returns:
        The simulation and its map.
    """
    if custom_map is not None and not isinstance(custom_map, WarehouseMap):
        raise ValueError(f"custom_map must be a rlkd.envs.agv.WarehouseMap, got {type(custom_map).__name__}")
    scene = custom_map if custom_map is not None else get_scenario(scenario)
    return AGVSim(num_envs, scene, **kwargs), scene


def observation_space(sim: AGVSim) -> spaces.Box:
    """Single-env observation space of ``sim``'s mode."""
    if sim.obs_mode == "pixels":
        return spaces.Box(0, 255, (sim.pixel_size, sim.pixel_size, 3), np.uint8)
    low = np.zeros(sim.obs_dim, dtype=np.float32)
    low[[1, 2, 4, -2, -1]] = -1.0  # cos/sin of the goal bearing and of the heading, turn rate: signed
    return spaces.Box(low, np.ones(sim.obs_dim, dtype=np.float32), dtype=np.float32)


class AGVWarehouseVectorEnv(VectorEnv):
    """``num_envs`` AGVs in a warehouse, stepped together with numpy array operations.

    Same-step autoreset: when an env terminates or truncates, ``step`` already returns its reset
    observation; the terminal one is in ``info["final_obs"]`` (always present, an array of the
    batched observation shape; rows with ``info["_final_obs"]`` False just repeat ``obs``).
    ``info["is_success"]`` and ``info["collision"]`` (bool, (N,)) describe the step just taken.

    Args:
        num_envs: Number of parallel envs.
        scenario: ``bay``, ``dock``, ``simple-static``, ``simple-dynamic``, ``complex-static`` or
            ``complex-dynamic``.
        custom_map: Use this map instead of a scenario.
        obs_mode: ``"vector"`` (9 + n_beams floats) or ``"pixels"`` (64x64x3 uint8).
        n_beams: Lidar beams.
        reward_mode: ``"sparse"`` (+1 at the goal) or ``"dense"`` (plus progress shaping).
        distractors: Random-walk colours of floor, racks and obstacles.
        color_set: Distractor colour set, ``"train"`` or ``"test"``.
        max_episode_steps: Truncation limit; ``None`` uses the scenario's (bay, dock 100; simple 2000;
            complex 3000/4000).
        render_mode: ``None`` or ``"rgb_array"``.
        render_size: Side of ``render()`` frames in pixels.
        **sim_kwargs: ``dt``, ``v_max``, ``w_max``, ``lidar_range``, ``pixel_size``,
            ``progress_weight`` (see ``AGVSim``).
    """

    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": ["rgb_array"],
        "render_fps": 4,
        "autoreset_mode": AutoresetMode.SAME_STEP,
    }

    def __init__(
        self,
        num_envs: int = 1,
        scenario: str = "simple-static",
        *,
        custom_map: WarehouseMap | None = None,
        obs_mode: str = "vector",
        n_beams: int = 16,
        reward_mode: str = "sparse",
        distractors: bool = False,
        color_set: str = "train",
        max_episode_steps: int | None = None,
        render_mode: str | None = None,
        render_size: int = 256,
        **sim_kwargs: Any,
    ) -> None:
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.sim, self.scene = make_sim(
            num_envs,
            scenario,
            custom_map,
            dict(
                obs_mode=obs_mode,
                n_beams=n_beams,
                reward_mode=reward_mode,
                distractors=distractors,
                color_set=color_set,
                max_episode_steps=max_episode_steps,
                **sim_kwargs,
            ),
        )
        self.num_envs = int(num_envs)
        self.render_mode = render_mode
        self.render_size = int(render_size)
        self.max_episode_steps = self.sim.max_episode_steps
        self.single_observation_space = observation_space(self.sim)
        self.single_action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.metadata = {**self.metadata, "render_fps": round(1.0 / self.sim.dt)}
        self._all = np.arange(self.num_envs)
        self._ones = np.ones(self.num_envs, dtype=bool)
        self._seeded = False
        self._needs_reset = True

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every env. Env ``i`` is seeded with ``seed + i``.

        Args:
            seed: Base seed; ``None`` continues the current streams (fresh entropy the first time).
            options: Unused; must be ``None`` or empty.

        Returns:
            Observations (N, *obs_shape) and an empty info dict.
        """
        if options:
            raise ValueError(f"AGV reset takes no options, got {sorted(options)}")
        super().reset(seed=seed)
        if seed is not None or not self._seeded:
            self.sim.seed(seed, self.np_random)
            self._seeded = True
        self.sim.reset_envs(self._all)
        self._needs_reset = False
        return self.sim.observe(slice(None)), {}

    def step(
        self, actions: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every env; done envs are reset in the same call.

        Args:
            actions: (N, 2) floats in [-1, 1] (clipped): forward speed and turn rate commands.

        Returns:
            obs (N, *obs_shape), reward (N,) float32, terminated (N,), truncated (N,), info.
        """
        if self._needs_reset:
            raise RuntimeError("call reset() before step()")
        a = validate_actions(actions, (self.num_envs, 2))
        out = self.sim.step(a)
        final_obs = self.sim.observe(slice(None))
        done = out["terminated"] | out["truncated"]
        obs = final_obs
        # Where an episode ended, the pose it ended at (the reset below moves the AGV to a new start).
        final_pose = self.poses()
        if done.any():
            idx = np.flatnonzero(done)
            self.sim.reset_envs(idx)
            obs = final_obs.copy()
            obs[idx] = self.sim.observe(idx)
        info = {
            "final_obs": final_obs,
            "_final_obs": done,
            "final_pose": final_pose,
            "_final_pose": done,
            "is_success": out["success"],
            "_is_success": self._ones,
            "collision": out["collision"],
            "_collision": self._ones,
        }
        return obs, out["reward"], out["terminated"], out["truncated"], info

    def set_color_set(self, name: str) -> None:
        """Switch the distractor colour set (``"train"``/``"test"``) for every env, now."""
        self.sim.set_color_set(name)

    def eval_tracker(self) -> Any:
        """The evaluation hook of ``rlkd eval``: a trajectory plot of the evaluated episodes."""
        from rlkd.envs.agv.trajectories import TrajectoryTracker

        return TrajectoryTracker(self)

    def poses(self) -> np.ndarray:
        """Current (x, y, heading) of every AGV, (N, 3) float64."""
        return np.stack([self.sim.x, self.sim.y, self.sim.theta], axis=1)

    def goals(self) -> np.ndarray:
        """Current goal (x, y) of every env, (N, 2) float64."""
        return self.sim.goal.copy()

    def render(self, env_index: int = 0) -> np.ndarray | None:  # type: ignore[override]
        """Top-down frame of one sub-env, (render_size, render_size, 3) uint8."""
        if self.render_mode is None:
            return None
        if not 0 <= env_index < self.num_envs:
            raise ValueError(f"env_index must be in [0, {self.num_envs}), got {env_index}")
        return self.sim.render(np.array([env_index]), self.render_size)[0]

    def close(self, **kwargs: Any) -> None:
        """Nothing to release (no windows or subprocesses)."""
