"""Point reach: a small agent square must reach a target square, from state or from pixels.

A CPU-sized pixel task for world-model agents: the agent has to *see* the target to score (its
position is drawn, never given), episodes are short, and the reward is dense. Natively vectorized
with numpy (Gymnasium ``VectorEnv``, same-step autoreset), like ``envs/agv``.

Arena [0, 1]^2. The action (2,) in [-1, 1] moves the agent by ``step_size * action`` (clipped to
the arena). The reward after each step is minus the agent-target distance; ``info["is_success"]``
says whether the agent is within ``success_radius`` of the target, so an episode counts as a
success when it *ends* there. Episodes last ``max_episode_steps`` (truncation; nothing terminates).

Observations: ``"vector"`` mode gives (agent x, y, target x, y) floats; ``"pixels"`` mode a
64x64x3 uint8 frame: dark floor, green target square, white agent square drawn on top.

Colour distractors (``color_set="train"`` or ``"test"``, the DisWM transfer setting): the floor
and the target square take colours from the set's hue range (the AGV warehouse's disjoint
``COLOR_SETS``), drawn at every reset and random-walked after every step; the agent stays white.
``set_color_set`` switches the set mid-training (``--color-switch``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from rlkd.envs.agv.colors import COLOR_SETS, hsv_to_rgb, reflect

FLOOR, TARGET, AGENT = (40, 40, 40), (40, 200, 60), (255, 255, 255)
# The agent was red in rlkd/PointReach-Pixels-v0: only ~14 nats of image likelihood per frame, and
# DreamerV2's world model (DMC KL scale 1.0) learned to leave it out (docs/diswm.md, "Why the pixel
# world model is slow"). White on the dark floor differs in all three channels.
RED_AGENT = (230, 50, 40)
PIXELS = 64
MARGIN = 5  # pixels between the arena edge and the frame edge, so squares stay inside
# Distractor colours in HSV: (saturation, value) ranges of the floor (dark) and the target (bright),
# so the target stays visible on the floor whatever the hue; the walk's step std per channel.
FLOOR_SV, TARGET_SV = ((0.3, 0.8), (0.1, 0.3)), ((0.6, 1.0), (0.65, 1.0))
COLOR_STEP_STD = 0.03


class PointReachVectorEnv(VectorEnv):
    """``num_envs`` point-reach tasks stepped together.

    Args:
        num_envs: Parallel envs.
        obs_mode: ``"vector"`` or ``"pixels"``.
        max_episode_steps: Episode length.
        step_size: Largest move per step and axis (arena units).
        success_radius: Distance that counts as reaching the target.
        min_start_distance: Smallest agent-target distance at reset.
        agent_px, target_px: Side of the agent and target squares in pixels.
        agent_rgb: Colour of the agent square.
        color_set: ``"none"`` (fixed colours) or a distractor colour set, ``"train"`` or ``"test"``.
        render_mode: ``None`` or ``"rgb_array"`` (the 64x64 frame of env 0).
    """

    metadata: ClassVar[dict[str, Any]] = {
        "render_modes": ["rgb_array"], "render_fps": 10, "autoreset_mode": AutoresetMode.SAME_STEP,
    }  # fmt: skip

    def __init__(
        self,
        num_envs: int = 1,
        obs_mode: str = "vector",
        max_episode_steps: int = 50,
        step_size: float = 0.1,
        success_radius: float = 0.1,
        min_start_distance: float = 0.3,
        agent_px: int = 7,
        target_px: int = 9,
        agent_rgb: tuple[int, int, int] = AGENT,
        color_set: str = "none",
        render_mode: str | None = None,
    ) -> None:
        if obs_mode not in ("vector", "pixels"):
            raise ValueError(f"obs_mode must be 'vector' or 'pixels', got {obs_mode!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        self.num_envs, self.obs_mode, self.render_mode = int(num_envs), obs_mode, render_mode
        self.max_episode_steps, self.step_size = int(max_episode_steps), float(step_size)
        self.success_radius, self.min_start_distance = float(success_radius), float(min_start_distance)
        self.agent_px, self.target_px = int(agent_px), int(target_px)
        self.agent_rgb = tuple(int(c) for c in agent_rgb)
        self._check_color_set(color_set)
        self.color_set = color_set
        self.hsv = np.zeros((self.num_envs, 2, 3))  # (N, floor|target, HSV) distractor colours
        if obs_mode == "pixels":
            self.single_observation_space = spaces.Box(0, 255, (PIXELS, PIXELS, 3), np.uint8)
        else:
            self.single_observation_space = spaces.Box(0.0, 1.0, (4,), np.float32)
        self.single_action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.agent = np.zeros((self.num_envs, 2))
        self.target = np.zeros((self.num_envs, 2))
        self.t = np.zeros(self.num_envs, np.int64)
        self._needs_reset = True

    # ---------------------------------------------------------------- state

    def _reset_envs(self, idx: np.ndarray) -> None:
        """New agent and target positions in [0.1, 0.9]^2 at least ``min_start_distance`` apart."""
        for i in idx:
            while True:
                agent, target = self.np_random.uniform(0.1, 0.9, (2, 2))
                if np.linalg.norm(agent - target) >= self.min_start_distance:
                    break
            self.agent[i], self.target[i] = agent, target
        self.t[idx] = 0
        if self.color_set != "none":
            lo, hi = self._color_box()
            self.hsv[idx] = self.np_random.uniform(lo, hi, (len(idx), 2, 3))

    @staticmethod
    def _check_color_set(name: str) -> None:
        if name != "none" and name not in COLOR_SETS:
            raise ValueError(f"color_set must be 'none' or one of {sorted(COLOR_SETS)}, got {name!r}")

    def _color_box(self) -> tuple[np.ndarray, np.ndarray]:
        """(2, 3) lower and upper HSV bounds of the floor and target colours of the current set."""
        hue = COLOR_SETS[self.color_set]
        lo = np.array([[hue[0], FLOOR_SV[0][0], FLOOR_SV[1][0]], [hue[0], TARGET_SV[0][0], TARGET_SV[1][0]]])
        hi = np.array([[hue[1], FLOOR_SV[0][1], FLOOR_SV[1][1]], [hue[1], TARGET_SV[0][1], TARGET_SV[1][1]]])
        return lo, hi

    def set_color_set(self, name: str) -> None:
        """Switch the distractor colour set now: every env draws new colours from ``name``."""
        self._check_color_set(name)
        self.color_set = name
        if name != "none":
            lo, hi = self._color_box()
            self.hsv[:] = self.np_random.uniform(lo, hi, self.hsv.shape)

    def distances(self) -> np.ndarray:
        """Agent-target distance of every env, (N,)."""
        return np.linalg.norm(self.agent - self.target, axis=1)

    def observe(self, idx: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Observations of envs ``idx``: (n, 4) float32 or (n, 64, 64, 3) uint8."""
        if self.obs_mode == "vector":
            return np.concatenate([self.agent[idx], self.target[idx]], 1).astype(np.float32)
        return self._draw(self.agent[idx], self.target[idx], idx)

    def _draw(
        self, agent: np.ndarray, target: np.ndarray, idx: np.ndarray | slice = slice(None)
    ) -> np.ndarray:
        if self.color_set == "none":
            return draw_frames(agent, target, self.agent_px, self.target_px, self.agent_rgb)
        floor, target_rgb = hsv_to_rgb(self.hsv[idx]).transpose(1, 0, 2)  # (n, 3) each
        return draw_frames(agent, target, self.agent_px, self.target_px, self.agent_rgb, floor, target_rgb)

    # ---------------------------------------------------------------- gymnasium API

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Reset every env; ``seed`` seeds the one generator that places agents and targets.

        That generator is Gymnasium's ``np_random``, seeded by ``super().reset``: for an int seed it is
        ``PCG64(SeedSequence(seed))``, the generator ``np.random.default_rng(seed)`` made before, so a
        seed gives the same episodes as it always did (tests/test_env_checkers.py).
        """
        if options:
            raise ValueError(f"point reach reset takes no options, got {sorted(options)}")
        super().reset(seed=seed)
        self._reset_envs(np.arange(self.num_envs))
        self._needs_reset = False
        return self.observe(), {}

    def step(self, actions: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, dict]:
        """Move every agent; envs whose episode ended are reset in the same call."""
        if self._needs_reset:
            raise RuntimeError("call reset() before step()")
        a = np.clip(np.asarray(actions, np.float64).reshape(self.num_envs, 2), -1.0, 1.0)
        self.agent = np.clip(self.agent + self.step_size * a, 0.0, 1.0)
        self.t += 1
        if self.color_set != "none":
            lo, hi = self._color_box()
            walk = COLOR_STEP_STD * self.np_random.standard_normal(self.hsv.shape)
            self.hsv = reflect(self.hsv + walk, lo, hi)
        dist = self.distances()
        reward = (-dist).astype(np.float32)
        success = dist < self.success_radius
        terminated = np.zeros(self.num_envs, bool)
        truncated = self.t >= self.max_episode_steps
        final_obs = self.observe()
        obs = final_obs
        if truncated.any():
            idx = np.flatnonzero(truncated)
            self._reset_envs(idx)
            obs = final_obs.copy()
            obs[idx] = self.observe(idx)
        info = {"final_obs": final_obs, "_final_obs": truncated, "is_success": success,
                "_is_success": np.ones(self.num_envs, bool)}  # fmt: skip
        return obs, reward, terminated, truncated, info

    def render(self) -> np.ndarray | None:  # type: ignore[override]
        """The 64x64 frame of env 0, or None without a render mode."""
        if self.render_mode is None:
            return None
        return self._draw(self.agent[:1], self.target[:1], slice(0, 1))[0]


def to_pixel(pos: np.ndarray) -> np.ndarray:
    """Arena coordinates (..., 2) -> integer pixel centres (column, row from the top)."""
    span = PIXELS - 1 - 2 * MARGIN
    col = MARGIN + np.rint(pos[..., 0] * span)
    row = MARGIN + np.rint((1.0 - pos[..., 1]) * span)
    return np.stack([col, row], -1).astype(np.int64)


def draw_frames(
    agent: np.ndarray,
    target: np.ndarray,
    agent_px: int,
    target_px: int,
    agent_rgb: tuple[int, int, int] = AGENT,
    floor_rgb: np.ndarray | None = None,
    target_rgb: np.ndarray | None = None,
) -> np.ndarray:
    """(n, 64, 64, 3) uint8 frames: floor, target square, agent square on top.

    ``floor_rgb`` and ``target_rgb`` (n, 3) give each frame its own colours (distractors); None
    draws the fixed ``FLOOR`` and ``TARGET``.
    """
    n = agent.shape[0]
    floor = np.broadcast_to(FLOOR if floor_rgb is None else floor_rgb, (n, 3))
    frames = np.empty((n, PIXELS, PIXELS, 3), np.uint8)
    frames[:] = floor[:, None, None, :]
    target_cols = np.broadcast_to(TARGET if target_rgb is None else target_rgb, (n, 3))
    agent_cols = np.broadcast_to(agent_rgb, (n, 3))
    for pos, side, colours in ((target, target_px, target_cols), (agent, agent_px, agent_cols)):
        for i, (c, r) in enumerate(to_pixel(pos)):
            lo = side // 2
            frames[i, max(r - lo, 0) : r - lo + side, max(c - lo, 0) : c - lo + side] = colours[i]
    return frames


class PointReachEnv(gym.Env):
    """One point-reach task: the vector env's code with one env and no autoreset."""

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, **kwargs: Any) -> None:
        self.vec = PointReachVectorEnv(1, **kwargs)
        self.observation_space = self.vec.single_observation_space
        self.action_space = self.vec.single_action_space
        self.render_mode = self.vec.render_mode

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        """Reset the task; ``seed`` seeds ``np_random``, which the vector env's code draws from."""
        super().reset(seed=seed)
        # One generator, this env's: seeded as the vector env seeds its own (the same stream for a seed).
        self.vec.np_random = self.np_random
        obs, info = self.vec.reset(options=options)
        return obs[0], info

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        obs, reward, term, trunc, info = self.vec.step(np.asarray(action)[None])
        last = info["final_obs"][0] if trunc[0] else obs[0]
        if trunc[0]:
            self.vec._needs_reset = True  # an ended episode needs reset(), as for any gym.Env
        success = bool(info["is_success"][0])
        return last, float(reward[0]), bool(term[0]), bool(trunc[0]), {"is_success": success}

    def render(self) -> np.ndarray | None:  # type: ignore[override]
        return self.vec.render()


def greedy_action(agent: np.ndarray, target: np.ndarray, step_size: float = 0.1) -> np.ndarray:
    """Scripted controller: straight to the target, (N, 2) in [-1, 1]."""
    return np.clip((target - agent) / step_size, -1.0, 1.0).astype(np.float32)


def centre_action(agent: np.ndarray, step_size: float = 0.1) -> np.ndarray:
    """Target-blind controller: to the arena's centre and stay there, (N, 2) in [-1, 1]."""
    return np.clip((0.5 - agent) / step_size, -1.0, 1.0).astype(np.float32)


def register_reach_envs() -> None:
    """Register ``rlkd/PointReach-v0`` (state) and ``rlkd/PointReach-Pixels-v1`` (64x64 pixels).

    ``rlkd/PointReach-Pixels-v0`` is the first pixel version, with a red agent square
    (``RED_AGENT``), kept so that runs made with it resume and evaluate as they were.
    """
    versions = (
        ("rlkd/PointReach-v0", {"obs_mode": "vector"}),
        ("rlkd/PointReach-Pixels-v0", {"obs_mode": "pixels", "agent_rgb": RED_AGENT}),
        ("rlkd/PointReach-Pixels-v1", {"obs_mode": "pixels"}),
    )
    for env_id, kwargs in versions:
        if env_id in gym.registry:
            continue
        gym.register(
            id=env_id,
            entry_point="rlkd.envs.reach:PointReachEnv",
            vector_entry_point="rlkd.envs.reach:PointReachVectorEnv",
            max_episode_steps=50,
            kwargs=kwargs,
        )
