"""Counter-based randomness of the AGV simulation: every draw hashes (env key, episode, step,
stream, index), so an env's episodes depend only on its own seed (see :mod:`.core`)."""

from __future__ import annotations

import numpy as np

_U64 = np.uint64
_MASK64 = (1 << 64) - 1
# Odd 64-bit constants (golden ratio, splitmix64, and two arbitrary large odd numbers).
_C_GOLD = _U64(0x9E3779B97F4A7C15)
_C_EPISODE = _U64(0xD1B54A32D192ED03)
_C_STEP = _U64(0xAEF17502108EF2D9)
_C_STREAM = _U64(0xF1357AEA2E62A9C5)

# Draw streams (any distinct integers).
S_START, S_GOAL, S_HEADING, S_OBST, S_COLOR, S_WALK, S_SWITCH = range(7)


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


def hash_normal(keys: np.ndarray, episode: np.ndarray, step: np.ndarray, stream: int, k: int) -> np.ndarray:
    """Counter-based standard normals, (n, k), by Box-Muller."""
    u = hash_uniform(keys, episode, step, stream, 2 * k)
    r = np.sqrt(-2.0 * np.log1p(-u[:, :k]))  # 1 - u in (0, 1], so the log is finite
    return r * np.cos(2.0 * np.pi * u[:, k:])
