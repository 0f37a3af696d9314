"""Batched AGV warehouse simulation shared by the vector env and the single env.

Everything here works on arrays with a leading env axis ``N``; there is no Python loop over
envs. The vector env (``vector.py``) adds same-step autoreset on top; the single env
(``single.py``) is the same simulation with ``N = 1`` and no autoreset, so both produce
identical trajectories for the same seeds and actions.

Randomness is counter-based: every draw is a hash of (env key, episode counter, stream, index),
so an env's episodes depend only on its own seed and not on how many other envs share the batch
or when they reset. Env ``i`` of a vector env seeded ``s`` gets the key of seed ``s + i``,
matching Gymnasium's ``SyncVectorEnv`` convention.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .colors import DEFAULT_PALETTE, ColorDistractors
from .lidar import LIDAR_CHUNK, Lidar
from .maps import AGV_RADIUS, GOAL_RADIUS, SPAWN_GRID, WarehouseMap, free_points, validate_map
from .raster import Raster
from .rng import S_COLOR, S_GOAL, S_HEADING, S_OBST, S_START, hash_uniform, seed_keys


class AGVSim(ColorDistractors, Lidar, Raster):
    """N independent AGVs in copies of one warehouse map, stepped together.

    Args:
        num_envs: Number of parallel envs ``N``.
        scene: The warehouse map.
        n_beams: Lidar beams, evenly spaced over 360 degrees, beam 0 straight ahead, counter-clockwise.
        obs_mode: ``"vector"`` or ``"pixels"``.
        reward_mode: ``"sparse"`` or ``"dense"``.
        distractors: Random-walk the floor/rack/obstacle colours (pixel observations and frames).
        color_set: Colour set name for distractors (``"train"`` or ``"test"``).
        dt: Control period in seconds.
        v_max: Maximum forward speed in m/s (action[0] = -1 -> 0, +1 -> v_max).
        w_max: Maximum turn rate in rad/s (action[1] in [-1, 1] -> [-w_max, w_max]).
        lidar_range: Lidar maximum range in metres.
        max_episode_steps: Truncation limit; ``None`` uses the scene's.
        pixel_size: Side of pixel observations.
        progress_weight: Dense mode only: reward per floor diagonal of progress towards the goal.
    """

    def __init__(
        self,
        num_envs: int,
        scene: WarehouseMap,
        *,
        n_beams: int = 16,
        obs_mode: str = "vector",
        reward_mode: str = "sparse",
        distractors: bool = False,
        color_set: str = "train",
        dt: float = 0.25,
        v_max: float = 1.0,
        w_max: float = 1.5,
        lidar_range: float = 8.0,
        max_episode_steps: int | None = None,
        pixel_size: int = 64,
        progress_weight: float = 1.0,
    ) -> None:
        _check_args(
            num_envs, n_beams, obs_mode, reward_mode, max_episode_steps, pixel_size,
            dt=dt, v_max=v_max, w_max=w_max, lidar_range=lidar_range, progress_weight=progress_weight,
        )  # fmt: skip
        validate_map(scene, AGV_RADIUS)
        self._check_color_set(color_set)
        self.n = int(num_envs)
        self.scene = scene
        self.n_beams = int(n_beams)
        self.obs_mode = obs_mode
        self.reward_mode = reward_mode
        self.distractors = bool(distractors)
        self.color_set = color_set
        self.dt, self.v_max, self.w_max, self.lidar_range = (
            float(dt),
            float(v_max),
            float(w_max),
            float(lidar_range),
        )
        self.max_episode_steps = int(max_episode_steps or scene.max_episode_steps)
        self.pixel_size = int(pixel_size)
        self.progress_scale = float(progress_weight) / scene.diagonal
        # goal (3), own velocities (2), lidar (n_beams), own pose on the floor map (4).
        self.obs_dim = 9 + self.n_beams

        # Static geometry, float32 for the lidar hot path.
        self.width, self.height = float(scene.width), float(scene.height)
        self.diag = scene.diagonal
        racks = scene.rack_array.astype(np.float32)
        self._rx0, self._ry0, self._rx1, self._ry1 = (racks[:, i].copy() for i in range(4))
        self._racks64 = scene.rack_array
        self._setup_rack_product(scene.rack_array)
        self._beam_angles = (2.0 * np.pi * np.arange(self.n_beams) / self.n_beams).astype(np.float64)
        paths = scene.path_array
        self._pa = paths[:, :2]  # (K, 2)
        self._pab = paths[:, 2:] - paths[:, :2]  # (K, 2)
        self._plen = np.hypot(self._pab[:, 0], self._pab[:, 1])  # (K,)
        self.k = scene.num_obstacles
        if scene.start_pose is None:
            self._start_pts = free_points(scene, scene.start_regions or ())
        if scene.goal is None:
            self._goal_pts = free_points(scene, scene.goal_regions or ())
        self._label_cache: dict[int, np.ndarray] = {}
        self._bufs: dict[tuple, np.ndarray] = {}

        self._init_state(self.n)

    def _init_state(self, n: int) -> None:
        """The per-env state arrays, ``(n, ...)``; episodes fill them at reset."""
        self.x = np.zeros(n)
        self.y = np.zeros(n)
        self.theta = np.zeros(n)
        self.v = np.zeros(n)
        self.w = np.zeros(n)
        self.goal = np.zeros((n, 2))
        self.start = np.zeros((n, 3))
        self.goal_dist = np.zeros(n)
        self.steps = np.zeros(n, dtype=np.int64)
        self.phase = np.zeros((n, self.k))  # arc length along the 2L back-and-forth cycle
        self.obst = np.zeros((n, self.k, 2))  # obstacle centres
        self.keys = seed_keys(np.arange(n))
        self.episode = np.zeros(n, dtype=np.uint64)
        self._switches = np.zeros(n, dtype=np.uint64)
        self.hsv = np.zeros((n, 3, 3))  # distractor colours: (env, floor/rack/obstacle, h/s/v)
        self.hsv0 = np.zeros((n, 3, 3))
        self.palette = np.broadcast_to(DEFAULT_PALETTE, (n, 6, 3)).copy()

    def seed(self, seed: int | None, rng: np.random.Generator) -> None:
        """Re-key every env: env ``i`` gets seed ``seed + i`` (fresh entropy from ``rng`` if None)."""
        base = int(rng.integers(0, 2**63)) if seed is None else int(seed)
        self.keys = seed_keys(base + np.arange(self.n, dtype=object))
        self.episode[:] = 0
        self._switches[:] = 0

    def reset_envs(self, idx: np.ndarray) -> None:
        """Start a new episode in envs ``idx`` (int array); bumps their episode counters.

        Args:
            idx: (m,) indices of the envs to reset.
        """
        if len(idx) == 0:
            return
        sc = self.scene
        keys, ep = self.keys[idx], self.episode[idx]
        zero = np.zeros(len(idx), dtype=np.uint64)
        if sc.start_pose is not None:
            start = np.broadcast_to(np.asarray(sc.start_pose, dtype=np.float64), (len(idx), 3)).copy()
        else:
            start = np.empty((len(idx), 3))
            start[:, :2] = self._pick(self._start_pts, keys, ep, zero, S_START)
            start[:, 2] = hash_uniform(keys, ep, zero, S_HEADING, 1)[:, 0] * 2 * np.pi - np.pi
        if sc.goal is not None:
            goal = np.broadcast_to(np.asarray(sc.goal, dtype=np.float64), (len(idx), 2)).copy()
        else:
            goal = self._pick(self._goal_pts, keys, ep, zero, S_GOAL)
            # Rejection for the minimum start-goal distance, vectorised over the failing envs.
            bad = np.hypot(*(goal - start[:, :2]).T) < sc.min_start_goal_distance
            tries = 1
            while bad.any():
                if tries > 64:
                    raise RuntimeError(
                        f"could not place a goal {sc.min_start_goal_distance} m from the start in map "
                        f"{sc.name!r}: lower min_start_goal_distance or enlarge goal_regions"
                    )
                b = np.flatnonzero(bad)
                goal[b] = self._pick(
                    self._goal_pts, keys[b], ep[b], np.full(len(b), tries, np.uint64), S_GOAL
                )
                bad[b] = np.hypot(*(goal[b] - start[b, :2]).T) < sc.min_start_goal_distance
                tries += 1
        self.x[idx], self.y[idx], self.theta[idx] = start[:, 0], start[:, 1], start[:, 2]
        self.start[idx] = start
        self.goal[idx] = goal
        self.v[idx] = 0.0
        self.w[idx] = 0.0
        self.steps[idx] = 0
        self.goal_dist[idx] = np.hypot(goal[:, 0] - start[:, 0], goal[:, 1] - start[:, 1])
        if self.k:
            u = hash_uniform(keys, ep, zero, S_OBST, self.k)
            self.phase[idx] = u * 2.0 * self._plen[None, :]
            self.obst[idx] = self._obstacle_pos(self.phase[idx])
        if self.distractors:
            self._init_colors(idx, hash_uniform(keys, ep, zero, S_COLOR, 9).reshape(-1, 3, 3))
        self.episode[idx] += np.uint64(1)

    def _pick(
        self, pts: np.ndarray, keys: np.ndarray, ep: np.ndarray, step: np.ndarray, stream: int
    ) -> np.ndarray:
        """Uniform candidate point plus sub-grid jitter, (m, 2)."""
        u = hash_uniform(keys, ep, step, stream, 3)
        i = np.minimum((u[:, 0] * len(pts)).astype(np.int64), len(pts) - 1)
        return pts[i] + (u[:, 1:] - 0.5) * SPAWN_GRID

    def _obstacle_pos(self, phase: np.ndarray) -> np.ndarray:
        """Obstacle centres (m, K, 2) from phases (m, K): triangle wave along each segment."""
        plen = np.maximum(self._plen, 1e-12)
        s = phase / plen  # in [0, 2)
        frac = np.where(s <= 1.0, s, 2.0 - s)
        frac = np.where(self._plen > 0, frac, 0.0)
        return self._pa[None] + frac[..., None] * self._pab[None]



    # ------------------------------------------------------------------ dynamics
    def step(self, action: np.ndarray) -> dict[str, np.ndarray]:
        """Advance every env by one control period (no autoreset).

        Args:
            action: (N, 2) float array, already validated; values are clipped to [-1, 1].

        Returns:
            Dict of (N,) arrays: reward (float32), terminated, truncated, success, collision (bool).
        """
        a = np.clip(action, -1.0, 1.0).astype(np.float64)
        v = (a[:, 0] + 1.0) * (0.5 * self.v_max)
        w = a[:, 1] * self.w_max
        self.x, self.y, self.theta = unicycle_step(self.x, self.y, self.theta, v, w, self.dt)
        self.v, self.w = v, w
        if self.k:
            period = 2.0 * self._plen
            self.phase = np.mod(self.phase + self.scene.obstacle_speed * self.dt, np.maximum(period, 1e-12))
            self.obst = self._obstacle_pos(self.phase)
        self.steps += 1
        collision = self.collides()
        d = np.hypot(self.goal[:, 0] - self.x, self.goal[:, 1] - self.y)
        # A step that both touches the goal and collides counts as a collision.
        success = (d <= GOAL_RADIUS) & ~collision
        terminated = collision | success
        truncated = (self.steps >= self.max_episode_steps) & ~terminated
        reward = success.astype(np.float32)
        if self.reward_mode == "dense":
            reward += ((self.goal_dist - d) * self.progress_scale).astype(np.float32)
        self.goal_dist = d
        if self.distractors:
            self._walk_colors()
        return {
            "reward": reward,
            "terminated": terminated,
            "truncated": truncated,
            "success": success,
            "collision": collision,
        }

    def collides(self) -> np.ndarray:
        """(N,) bool: the AGV disc overlaps a wall, rack or obstacle (touching is not a collision)."""
        r = AGV_RADIUS
        x, y = self.x, self.y
        hit = (x < r) | (x > self.width - r) | (y < r) | (y > self.height - r)
        if len(self._racks64):
            rk = self._racks64
            dx = np.maximum(np.maximum(rk[None, :, 0] - x[:, None], 0.0), x[:, None] - rk[None, :, 2])
            dy = np.maximum(np.maximum(rk[None, :, 1] - y[:, None], 0.0), y[:, None] - rk[None, :, 3])
            hit |= ((dx * dx + dy * dy) < r * r).any(axis=1)
        if self.k:
            ox = self.obst[..., 0] - x[:, None]
            oy = self.obst[..., 1] - y[:, None]
            rr = r + self.scene.obstacle_radius
            hit |= ((ox * ox + oy * oy) < rr * rr).any(axis=1)
        return hit

    # ------------------------------------------------------------------ observations
    def observe(self, idx: np.ndarray | slice) -> np.ndarray:
        """Observations of envs ``idx``: (m, 9 + n_beams) float32 or (m, S, S, 3) uint8."""
        if self.obs_mode == "pixels":
            return self.render(idx, self.pixel_size)
        return self.vector_obs(idx)

    def vector_obs(self, idx: np.ndarray | slice) -> np.ndarray:
        """Vector observations (m, 9 + n_beams), float32; layout in docs/agv.md."""
        x, y, th = self.x[idx], self.y[idx], self.theta[idx]
        gx, gy = self.goal[idx, 0] - x, self.goal[idx, 1] - y
        m = len(x)
        out = np.empty((m, self.obs_dim), dtype=np.float32)
        out[:, 0] = np.minimum(np.hypot(gx, gy) / self.diag, 1.0)
        bearing = np.arctan2(gy, gx) - th
        out[:, 1] = np.cos(bearing)
        out[:, 2] = np.sin(bearing)
        out[:, 3] = self.v[idx] / self.v_max
        out[:, 4] = self.w[idx] / self.w_max
        obst = self.obst[idx]
        # Chunks of LIDAR_CHUNK envs keep the lidar's scratch arrays cache-resident (a 4096-env
        # batch in one go runs at half the per-env speed of 1024).
        for c in range(0, m, LIDAR_CHUNK):
            sl = slice(c, c + LIDAR_CHUNK)
            out[sl, 5 : 5 + self.n_beams] = self.lidar(x[sl], y[sl], th[sl], obst[sl]) / np.float32(
                self.lidar_range
            )
        # The pose on the map (as an AGV knows it from localisation) is what makes state novelty
        # mean "a part of the warehouse not yet visited": without it RND/RDD only see egocentric
        # lidar patterns, which repeat in every aisle.
        out[:, -4] = x / self.width
        out[:, -3] = y / self.height
        out[:, -2] = np.cos(th)
        out[:, -1] = np.sin(th)
        return out




def _check_args(
    num_envs: int, n_beams: int, obs_mode: str, reward_mode: str, max_episode_steps: int | None,
    pixel_size: int, **positive: float,
) -> None:  # fmt: skip
    """The :class:`AGVSim` arguments no type can check; a clear ``ValueError`` for each."""
    if not isinstance(num_envs, int | np.integer) or num_envs < 1:
        raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
    if not isinstance(n_beams, int | np.integer) or n_beams < 1:
        raise ValueError(f"n_beams must be an integer >= 1 (e.g. 16), got {n_beams!r}")
    if obs_mode not in ("vector", "pixels"):
        raise ValueError(f"obs_mode must be 'vector' or 'pixels', got {obs_mode!r}")
    if reward_mode not in ("sparse", "dense"):
        raise ValueError(f"reward_mode must be 'sparse' or 'dense', got {reward_mode!r}")
    for name, val in positive.items():
        if not np.isfinite(val) or val <= 0:
            raise ValueError(f"{name} must be a positive finite number, got {val!r}")
    if max_episode_steps is not None and max_episode_steps < 1:
        raise ValueError(f"max_episode_steps must be >= 1 or None, got {max_episode_steps!r}")
    if pixel_size < 8:
        raise ValueError(f"pixel_size must be >= 8, got {pixel_size}")


def unicycle_step(
    x: np.ndarray, y: np.ndarray, theta: np.ndarray, v: np.ndarray, w: np.ndarray, dt: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact unicycle motion under constant (v, w) for ``dt`` seconds.

    The textbook arc ``x' = x + v/w (sin(th + w dt) - sin th)``, ``y' = y - v/w (cos(th + w dt) -
    cos th)`` equals the chord form used here, ``x' = x + v dt sinc(w dt / 2) cos(th + w dt / 2)``
    (same for y with sin), which needs no special case at w = 0 and no cancellation near it.

    Args:
        x: (N,) positions.
        y: (N,) positions.
        theta: (N,) headings.
        v: (N,) forward speeds (m/s).
        w: (N,) turn rates (rad/s).
        dt: Duration (s).

    Returns:
        New ``(x, y, theta)``, heading wrapped to [-pi, pi).
    """
    half = 0.5 * w * dt
    chord = v * dt * np.sinc(half / np.pi)  # np.sinc(z) = sin(pi z) / (pi z)
    mid = theta + half
    th = np.mod(theta + w * dt + np.pi, 2 * np.pi) - np.pi
    return x + chord * np.cos(mid), y + chord * np.sin(mid), th


def validate_actions(action: Any, shape: tuple[int, ...]) -> np.ndarray:
    """Check shape and finiteness; clipping to [-1, 1] happens in the step.

    Args:
        action: Anything array-like.
        shape: Required shape, ``(N, 2)`` or ``(2,)``.

    Returns:
        The action as a float array of ``shape``.

    Raises:
        ValueError: Wrong shape or non-finite values.
    """
    try:
        a = np.asarray(action, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValueError(f"action must be a numeric array of shape {shape}, got {action!r}") from e
    if a.shape != shape:
        raise ValueError(
            f"action has shape {a.shape}, expected {shape}: (linear, angular) commands in [-1, 1]"
            + (" for each env" if len(shape) == 2 else "")
        )
    if not np.isfinite(a).all():
        raise ValueError(
            f"action contains NaN or inf: {a!r}; actions must be finite (they are clipped to [-1, 1])"
        )
    return a
