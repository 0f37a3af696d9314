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

import colorsys
from collections import Counter
from typing import Any

import numpy as np

from .maps import AGV_RADIUS, GOAL_RADIUS, SPAWN_GRID, WarehouseMap, free_points, validate_map

# Colour sets for the distractor option (hue in [0, 1), as in HSV). "train" and "test" cover
# disjoint hue ranges, with gaps so that uint8 rounding can never move a colour across sets.
COLOR_SETS: dict[str, tuple[float, float]] = {"train": (0.02, 0.48), "test": (0.52, 0.98)}
# Saturation range and per-element value ranges: the floor stays darker than racks and
# obstacles so the scene remains legible whatever the hue.
_SAT_RANGE = (0.35, 0.85)
_VAL_RANGES = ((0.2, 0.45), (0.6, 0.95), (0.6, 0.95))  # floor, racks, obstacles
DISTRACTOR_STEP_STD = 0.03
DISTRACTOR_MAX_DELTA = 0.25

# Palette slots used by the rasteriser.
FLOOR, RACK, WALL, OBSTACLE, GOAL, AGV = range(6)
_DEFAULT_PALETTE = np.array(
    [
        (232, 232, 226),  # floor
        (150, 105, 60),  # racks
        (70, 70, 70),  # walls
        (240, 140, 20),  # obstacles
        (40, 175, 70),  # goal
        (30, 90, 220),  # AGV
    ],
    dtype=np.uint8,
)

# "No hit" distance in the lidar (finite so it can be formed by multiplication; capped later).
_BIG = np.float32(1e30)
_LIDAR_CHUNK = 1024
_U64 = np.uint64
_MASK64 = (1 << 64) - 1
# Odd 64-bit constants (golden ratio, splitmix64, and two arbitrary large odd numbers).
_C_GOLD = _U64(0x9E3779B97F4A7C15)
_C_EPISODE = _U64(0xD1B54A32D192ED03)
_C_STEP = _U64(0xAEF17502108EF2D9)
_C_STREAM = _U64(0xF1357AEA2E62A9C5)

# Draw streams (any distinct integers).
_S_START, _S_GOAL, _S_HEADING, _S_OBST, _S_COLOR, _S_WALK, _S_SWITCH = range(7)


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64 finaliser on a uint64 array (wraps modulo 2**64 by design)."""
    z = (z ^ (z >> _U64(30))) * _U64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> _U64(27))) * _U64(0x94D049BB133111EB)
    return z ^ (z >> _U64(31))


def seed_keys(seeds: np.ndarray) -> np.ndarray:
    """Per-env uint64 keys from integer seeds (any Python ints, reduced modulo 2**64)."""
    s = np.array([int(v) & _MASK64 for v in np.ravel(seeds)], dtype=np.uint64)
    return _mix64(s + _C_GOLD)


def hash_uniform(keys: np.ndarray, episode: np.ndarray, step: np.ndarray, stream: int, k: int) -> np.ndarray:
    """Counter-based uniforms in [0, 1).

    Args:
        keys: (n,) uint64 env keys.
        episode: (n,) uint64 episode counters.
        step: (n,) uint64 step counters (zeros for per-episode draws).
        stream: Small integer naming what the draw is for.
        k: Number of draws per env.

    Returns:
        (n, k) float64 uniforms.
    """
    base = _mix64(
        keys ^ _mix64(episode * _C_EPISODE + step * _C_STEP + _U64((stream * int(_C_STREAM)) & _MASK64))
    )
    z = _mix64(base[:, None] + np.arange(1, k + 1, dtype=np.uint64)[None, :] * _C_GOLD)
    return (z >> _U64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def _hash_normal(keys: np.ndarray, episode: np.ndarray, step: np.ndarray, stream: int, k: int) -> np.ndarray:
    """Counter-based standard normals, (n, k), by Box-Muller."""
    u = hash_uniform(keys, episode, step, stream, 2 * k)
    r = np.sqrt(-2.0 * np.log1p(-u[:, :k]))  # 1 - u in (0, 1], so the log is finite
    return r * np.cos(2.0 * np.pi * u[:, k:])


def _hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """Vectorised HSV -> RGB uint8; ``hsv`` (..., 3) in [0, 1]."""
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    i = np.floor(h * 6.0)
    f = h * 6.0 - i
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    i = i.astype(np.int64) % 6
    r = np.choose(i, [v, q, p, p, t, v])
    g = np.choose(i, [t, v, v, q, p, p])
    b = np.choose(i, [p, p, t, v, v, q])
    return np.clip(np.rint(np.stack([r, g, b], axis=-1) * 255.0), 0, 255).astype(np.uint8)


def rgb_to_hue(rgb: np.ndarray) -> np.ndarray:
    """Hue in [0, 1) of uint8 RGB colours ``(..., 3)`` (for tests and analysis)."""
    flat = rgb.reshape(-1, 3).astype(np.float64) / 255.0
    return np.array([colorsys.rgb_to_hsv(*c)[0] for c in flat]).reshape(rgb.shape[:-1])


def _reflect(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Reflect ``x`` into ``[lo, hi]`` (reflection, unlike clipping, never freezes a walk)."""
    x = np.where(x > hi, 2 * hi - x, x)
    x = np.where(x < lo, 2 * lo - x, x)
    return np.clip(x, lo, hi)


class AGVSim:
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
        if not isinstance(num_envs, int | np.integer) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive integer, got {num_envs!r}")
        if not isinstance(n_beams, int | np.integer) or n_beams < 1:
            raise ValueError(f"n_beams must be an integer >= 1 (e.g. 16), got {n_beams!r}")
        if obs_mode not in ("vector", "pixels"):
            raise ValueError(f"obs_mode must be 'vector' or 'pixels', got {obs_mode!r}")
        if reward_mode not in ("sparse", "dense"):
            raise ValueError(f"reward_mode must be 'sparse' or 'dense', got {reward_mode!r}")
        positive = {"dt": dt, "v_max": v_max, "w_max": w_max, "lidar_range": lidar_range,
                    "progress_weight": progress_weight}  # fmt: skip
        for name, val in positive.items():
            if not np.isfinite(val) or val <= 0:
                raise ValueError(f"{name} must be a positive finite number, got {val!r}")
        if max_episode_steps is not None and max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be >= 1 or None, got {max_episode_steps!r}")
        if pixel_size < 8:
            raise ValueError(f"pixel_size must be >= 8, got {pixel_size}")
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

        # Per-env state.
        n = self.n
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
        self.palette = np.broadcast_to(_DEFAULT_PALETTE, (n, 6, 3)).copy()

    # ------------------------------------------------------------------ seeding / reset
    @staticmethod
    def _check_color_set(name: str) -> None:
        if name not in COLOR_SETS:
            raise ValueError(f"unknown colour set {name!r}; choose one of {sorted(COLOR_SETS)}")

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
            start[:, :2] = self._pick(self._start_pts, keys, ep, zero, _S_START)
            start[:, 2] = hash_uniform(keys, ep, zero, _S_HEADING, 1)[:, 0] * 2 * np.pi - np.pi
        if sc.goal is not None:
            goal = np.broadcast_to(np.asarray(sc.goal, dtype=np.float64), (len(idx), 2)).copy()
        else:
            goal = self._pick(self._goal_pts, keys, ep, zero, _S_GOAL)
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
                    self._goal_pts, keys[b], ep[b], np.full(len(b), tries, np.uint64), _S_GOAL
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
            u = hash_uniform(keys, ep, zero, _S_OBST, self.k)
            self.phase[idx] = u * 2.0 * self._plen[None, :]
            self.obst[idx] = self._obstacle_pos(self.phase[idx])
        if self.distractors:
            self._init_colors(idx, hash_uniform(keys, ep, zero, _S_COLOR, 9).reshape(-1, 3, 3))
        self.episode[idx] += _U64(1)

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

    # ------------------------------------------------------------------ colours
    def _color_bounds(self, idx: np.ndarray | slice) -> tuple[np.ndarray, np.ndarray]:
        """Per-env walk bounds (m, 3, 3): the set's box intersected with +-max_delta of the start."""
        hlo, hhi = COLOR_SETS[self.color_set]
        lo = np.array([[hlo, _SAT_RANGE[0], v[0]] for v in _VAL_RANGES])
        hi = np.array([[hhi, _SAT_RANGE[1], v[1]] for v in _VAL_RANGES])
        h0 = self.hsv0[idx]
        return np.maximum(lo, h0 - DISTRACTOR_MAX_DELTA), np.minimum(hi, h0 + DISTRACTOR_MAX_DELTA)

    def _init_colors(self, idx: np.ndarray, u: np.ndarray) -> None:
        hlo, hhi = COLOR_SETS[self.color_set]
        lo = np.array([[hlo, _SAT_RANGE[0], v[0]] for v in _VAL_RANGES])
        hi = np.array([[hhi, _SAT_RANGE[1], v[1]] for v in _VAL_RANGES])
        self.hsv0[idx] = lo + u * (hi - lo)
        self.hsv[idx] = self.hsv0[idx]
        self._update_palette(idx)

    def _update_palette(self, idx: np.ndarray | slice) -> None:
        rgb = _hsv_to_rgb(self.hsv[idx])  # (m, 3, 3)
        pal = self.palette[idx]
        pal[:, FLOOR] = rgb[:, 0]
        pal[:, RACK] = rgb[:, 1]
        pal[:, WALL] = rgb[:, 1]
        pal[:, OBSTACLE] = rgb[:, 2]
        # Achromatic AGV and goal stay outside every colour set, so they are never confused.
        pal[:, GOAL] = 0
        pal[:, AGV] = 255
        self.palette[idx] = pal

    def _walk_colors(self) -> None:
        z = _hash_normal(self.keys, self.episode, self.steps.astype(np.uint64), _S_WALK, 9).reshape(-1, 3, 3)
        lo, hi = self._color_bounds(slice(None))
        self.hsv = _reflect(self.hsv + DISTRACTOR_STEP_STD * z, lo, hi)
        self._update_palette(slice(None))

    def set_color_set(self, name: str) -> None:
        """Switch the distractor colour set now: every env redraws its colours from ``name``."""
        self._check_color_set(name)
        self.color_set = name
        if self.distractors:
            self._switches += _U64(1)
            u = hash_uniform(self.keys, self.episode, self._switches, _S_SWITCH, 9).reshape(-1, 3, 3)
            self._init_colors(np.arange(self.n), u)

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
        # Chunks of _LIDAR_CHUNK envs keep the lidar's scratch arrays cache-resident (a 4096-env
        # batch in one go runs at half the per-env speed of 1024).
        for c in range(0, m, _LIDAR_CHUNK):
            sl = slice(c, c + _LIDAR_CHUNK)
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

    def _setup_rack_product(self, racks: np.ndarray) -> None:
        """Split the racks into a full grid (every x-interval x every y-interval) and the rest.

        Rows of shelving form such a grid in both built-in layouts; the slab test is then computed
        per unique interval and combined by broadcasting, (Ux, Uy, M), instead of per rack: about
        2x fewer big ops. Racks whose x- or y-interval occurs once (the complex scene's partition)
        are tested one by one.
        """
        racks = racks.astype(np.float32)
        self._product = None
        self._extra = racks
        if len(racks) == 0:
            return
        xs = [tuple(r) for r in racks[:, [0, 2]]]
        ys = [tuple(r) for r in racks[:, [1, 3]]]
        cx, cy = Counter(xs), Counter(ys)
        in_grid = np.array([cx[x] > 1 and cy[y] > 1 for x, y in zip(xs, ys, strict=True)])
        grid = racks[in_grid]
        if len(grid) == 0:
            return
        ux = np.unique(grid[:, [0, 2]], axis=0)
        uy = np.unique(grid[:, [1, 3]], axis=0)
        if {(a, b, c, d) for a, c in ux for b, d in uy} != {tuple(r) for r in grid}:
            return
        self._product = (ux, uy)
        self._extra = racks[~in_grid]

    def lidar(self, x: np.ndarray, y: np.ndarray, th: np.ndarray, obst: np.ndarray) -> np.ndarray:
        """Range to the first rack, wall or obstacle along each beam.

        Work arrays are laid out (shapes, M, m * B) with the long env*beam axis last, so that
        numpy's inner loops run over thousands of contiguous elements rather than over the
        handful of racks or obstacles (about 3x faster than (m, B, R)).

        Args:
            x: (m,) positions.
            y: (m,) positions.
            th: (m,) headings.
            obst: (m, K, 2) obstacle centres.

        Returns:
            (m, n_beams) float32 ranges in metres, capped at ``lidar_range``.
        """
        m, b = len(x), self.n_beams
        f32 = np.float32
        px = np.repeat(x.astype(f32), b)  # (M,)
        py = np.repeat(y.astype(f32), b)
        ang = (th[:, None] + self._beam_angles[None, :]).astype(f32).ravel()
        dx = np.cos(ang)  # (M,)
        dy = np.sin(ang)
        # Keep directions away from 0 so 1/d stays finite (a beam parallel to a rack face then
        # reads "no hit" for that face, which is the correct limit).
        tiny = f32(1e-7)
        dx[np.abs(dx) < tiny] = tiny
        dy[np.abs(dy) < tiny] = tiny
        ix = f32(1.0) / dx
        iy = f32(1.0) / dy
        # Walls: the floor is a box seen from inside, so the exit distance is the range.
        wx = (np.where(dx > 0, f32(self.width), f32(0.0)) - px) * ix
        wy = (np.where(dy > 0, f32(self.height), f32(0.0)) - py) * iy
        best = np.minimum(np.minimum(wx, wy), f32(self.lidar_range))
        if len(self._rx0):
            np.minimum(best, self._rack_hits(px, py, ix, iy), out=best)
        if self.k:
            ob = obst.astype(f32)
            np.minimum(best, self._disc_hits(px, py, dx, dy, ob[..., 0], ob[..., 1]), out=best)
        np.maximum(best, f32(0.0), out=best)
        return best.reshape(m, b)

    def _work(self, name: str, shape: tuple[int, ...], dtype: type = np.float32) -> np.ndarray:
        """Reusable scratch array.

        The lidar's temporaries are ~1 MB each at 1024 envs; freshly allocated, glibc hands them
        out as new mmap pages and the page faults cost more than the arithmetic (3x slower).
        """
        key = (name, shape)
        buf = self._bufs.get(key)
        if buf is None:
            buf = self._bufs[key] = np.empty(shape, dtype=dtype)
        return buf

    def _slabs(
        self, tag: str, lo: np.ndarray, hi: np.ndarray, p: np.ndarray, inv: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Entry and exit distances of every beam through the slabs ``[lo_j, hi_j]``: 2 x (J, M)."""
        shape = (len(lo), len(p))
        t0, t1 = self._work(tag + "0", shape), self._work(tag + "1", shape)
        np.multiply(np.subtract(lo[:, None], p[None, :], out=t0), inv[None, :], out=t0)
        np.multiply(np.subtract(hi[:, None], p[None, :], out=t1), inv[None, :], out=t1)
        near = np.minimum(t0, t1, out=self._work(tag + "n", shape))
        return near, np.maximum(t0, t1, out=t1)

    def _rack_hits(self, px: np.ndarray, py: np.ndarray, ix: np.ndarray, iy: np.ndarray) -> np.ndarray:
        """Slab-method entry distance to the nearest rack, (M,); ``_BIG`` for no hit.

        A box is hit iff max(entry_x, entry_y, 0) <= min(exit_x, exit_y); clamping the entry at 0
        also rejects boxes behind the sensor (the AGV is never inside a rack, that terminates).
        """
        mm = len(px)
        best = None
        if self._product is not None:
            ux, uy = self._product
            txn, txf = self._slabs("x", ux[:, 0], ux[:, 1], px, ix)  # (Ux, M)
            tyn, tyf = self._slabs("y", uy[:, 0], uy[:, 1], py, iy)  # (Uy, M)
            np.maximum(txn, 0.0, out=txn)
            shape = (len(ux), len(uy), mm)
            near = np.maximum(txn[:, None, :], tyn[None, :, :], out=self._work("near", shape))  # (Ux, Uy, M)
            far = np.minimum(txf[:, None, :], tyf[None, :, :], out=self._work("far", shape))
            best = self._first_hit(near, far, mm)
        if len(self._extra):
            ex = self._extra
            txn, txf = self._slabs("ex", ex[:, 0], ex[:, 2], px, ix)  # (R, M)
            tyn, tyf = self._slabs("ey", ex[:, 1], ex[:, 3], py, iy)
            near = np.maximum(np.maximum(txn, tyn, out=txn), 0.0, out=txn)
            far = np.minimum(txf, tyf, out=txf)
            hits = self._first_hit(near, far, mm)
            best = hits if best is None else np.minimum(best, hits, out=best)
        return best

    def _first_hit(self, near: np.ndarray, far: np.ndarray, mm: int) -> np.ndarray:
        """Nearest entry distance over boxes, (M,): a box counts where ``near <= far``; ``_BIG`` if none."""
        # max(near, BIG * miss) rather than np.where/copyto: plain arithmetic is ~10x faster here.
        miss = np.greater(near, far, out=self._work("miss", near.shape, np.bool_))
        np.maximum(near, np.multiply(miss, _BIG, out=far), out=near)
        return near.reshape(-1, mm).min(axis=0)

    def _disc_hits(
        self, px: np.ndarray, py: np.ndarray, dx: np.ndarray, dy: np.ndarray, ox: np.ndarray, oy: np.ndarray
    ) -> np.ndarray:
        """Distance along each beam to the nearest obstacle disc, (M,); ``_BIG`` for no hit.

        Args:
            px: (M,) beam origins.
            py: (M,) beam origins.
            dx: (M,) unit beam directions.
            dy: (M,) unit beam directions.
            ox: (m, K) obstacle centres.
            oy: (m, K) obstacle centres.
        """
        b = self.n_beams
        shape = (ox.shape[1], len(px))
        mx = np.subtract(np.repeat(ox.T, b, axis=1), px[None, :], out=self._work("mx", shape))  # (K, M)
        my = np.subtract(np.repeat(oy.T, b, axis=1), py[None, :], out=self._work("my", shape))
        # proj: distance along the beam to the closest approach of each centre.
        proj = np.multiply(mx, dx[None, :], out=self._work("proj", shape))
        proj += np.multiply(my, dy[None, :], out=self._work("tmp", shape))
        disc = np.multiply(mx, mx, out=mx)
        disc += np.multiply(my, my, out=my)
        np.subtract(np.multiply(proj, proj, out=my), disc, out=disc)
        disc += np.float32(self.scene.obstacle_radius**2)
        t = np.subtract(proj, np.sqrt(np.maximum(disc, 0.0, out=my), out=my), out=proj)
        # Miss if the line passes wide of the disc (disc < 0) or the disc is behind (t < 0).
        miss = np.less(np.minimum(disc, t, out=disc), 0.0, out=self._work("dmiss", shape, np.bool_))
        return np.maximum(t, np.multiply(miss, _BIG, out=my), out=t).min(axis=0)

    # ------------------------------------------------------------------ rendering
    def _layout(self, size: int) -> tuple[float, float, float]:
        """Pixels per metre and pixel offsets (x, y) of the floor's top-left corner."""
        scale = (size - 2.0) / max(self.width, self.height)  # keep >= 1 px of wall on every side
        return scale, (size - self.width * scale) / 2.0, (size - self.height * scale) / 2.0

    def _labels(self, size: int) -> np.ndarray:
        """(size, size) uint8 palette slots of the static map (floor/rack/wall), cached."""
        if size not in self._label_cache:
            scale, ox, oy = self._layout(size)
            c = np.arange(size) + 0.5
            wx = (c - ox) / scale  # world x of each column centre
            wy = self.height - (c - oy) / scale  # world y of each row centre
            px, py = np.meshgrid(wx, wy, indexing="xy")
            lab = np.full((size, size), FLOOR, dtype=np.uint8)
            for x0, y0, x1, y1 in self._racks64:
                lab[(px >= x0) & (px <= x1) & (py >= y0) & (py <= y1)] = RACK
            lab[(px < 0) | (px > self.width) | (py < 0) | (py > self.height)] = WALL
            self._label_cache[size] = lab
        return self._label_cache[size]

    def render(self, idx: np.ndarray | slice, size: int) -> np.ndarray:
        """Top-down frames of envs ``idx``: (m, size, size, 3) uint8, north up.

        Discs are drawn at their true size but at least 1.5 px in radius so that the AGV and
        the goal stay visible in 64 x 64 observations.
        """
        scale, ox, oy = self._layout(size)
        pal = self.palette[idx]  # (m, 6, 3)
        frames = pal[:, self._labels(size)]  # (m, S, S, 3)

        m = len(frames)
        env_ix = np.arange(m)[:, None, None, None]

        def draw(cx: np.ndarray, cy: np.ndarray, radius: float, color: np.ndarray) -> None:
            # cx, cy: (m, D) world centres; color: (m, 3) uint8. Only a P x P pixel patch around
            # each disc is tested (not the whole frame): ~100x less work at 64 x 64.
            col = ox + cx * scale  # pixel coordinates of the centres, (m, D)
            row = oy + (self.height - cy) * scale
            r = max(radius * scale, 1.5)
            p = int(np.ceil(2 * r)) + 2
            off = np.arange(p)
            jj = (
                np.floor(col - r).astype(np.int64)[..., None, None] + off[None, None, None, :]
            )  # (m, D, 1, P)
            ii = (
                np.floor(row - r).astype(np.int64)[..., None, None] + off[None, None, :, None]
            )  # (m, D, P, 1)
            inside = (jj + 0.5 - col[..., None, None]) ** 2 + (ii + 0.5 - row[..., None, None]) ** 2 <= r * r
            inside &= (jj >= 0) & (jj < size) & (ii >= 0) & (ii < size)
            e, i, j = (np.broadcast_to(a, inside.shape)[inside] for a in (env_ix, ii, jj))
            frames[e, i, j] = color[e]

        draw(self.goal[idx, 0:1], self.goal[idx, 1:2], GOAL_RADIUS, pal[:, GOAL])
        if self.k:
            ob = self.obst[idx]
            draw(ob[..., 0], ob[..., 1], self.scene.obstacle_radius, pal[:, OBSTACLE])
        x, y, th = self.x[idx], self.y[idx], self.theta[idx]
        draw(x[:, None], y[:, None], AGV_RADIUS, pal[:, AGV])
        if AGV_RADIUS * scale >= 4.0:  # heading marker only where the AGV is big enough to show it
            hx = x + 0.55 * AGV_RADIUS * np.cos(th)
            hy = y + 0.55 * AGV_RADIUS * np.sin(th)
            draw(hx[:, None], hy[:, None], 0.3 * AGV_RADIUS, np.zeros_like(pal[:, AGV]))
        return frames


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
