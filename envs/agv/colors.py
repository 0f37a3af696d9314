"""Colour distractors: per-env random-walk colours of floor, racks and obstacles, drawn from
disjoint hue sets ("train", "test") that can be switched mid-training (DisWM's colour switch)."""

from __future__ import annotations

import colorsys

import numpy as np

from .rng import S_SWITCH, S_WALK, hash_normal, hash_uniform

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
DEFAULT_PALETTE = np.array(
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


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
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


def reflect(x: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Reflect ``x`` into ``[lo, hi]`` (reflection, unlike clipping, never freezes a walk)."""
    x = np.where(x > hi, 2 * hi - x, x)
    x = np.where(x < lo, 2 * lo - x, x)
    return np.clip(x, lo, hi)



class ColorDistractors:
    """The distractor half of :class:`.core.AGVSim` (a mixin: it reads and writes the sim's state)."""

    # ------------------------------------------------------------------ seeding / reset
    @staticmethod
    def _check_color_set(name: str) -> None:
        if name not in COLOR_SETS:
            raise ValueError(f"unknown colour set {name!r}; choose one of {sorted(COLOR_SETS)}")

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
        rgb = hsv_to_rgb(self.hsv[idx])  # (m, 3, 3)
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
        z = hash_normal(self.keys, self.episode, self.steps.astype(np.uint64), S_WALK, 9).reshape(-1, 3, 3)
        lo, hi = self._color_bounds(slice(None))
        self.hsv = reflect(self.hsv + DISTRACTOR_STEP_STD * z, lo, hi)
        self._update_palette(slice(None))

    def set_color_set(self, name: str) -> None:
        """Switch the distractor colour set now: every env redraws its colours from ``name``."""
        self._check_color_set(name)
        self.color_set = name
        if self.distractors:
            self._switches += np.uint64(1)
            u = hash_uniform(self.keys, self.episode, self._switches, S_SWITCH, 9).reshape(-1, 3, 3)
            self._init_colors(np.arange(self.n), u)
