"""Alignment of curves, and the confidence band over seeds."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Two-sided 95% Student-t quantiles t(0.975, df) for df = 1..30 (standard tables).
_T975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip


# ===================================================================== numerics
def align(curves: list[tuple[np.ndarray, np.ndarray]], points: int) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate runs logged at different x (steps or seconds) onto one common grid.

    The grid has ``points`` evenly spaced x from the largest first x of any run to the smallest last
    x of any run, so every grid point lies inside every run's logged range: values are linearly
    interpolated between each run's neighbouring points and never extrapolated before a run's first
    or after its last point (that would invent data). Runs that go further are cut at the shortest.

    Args:
        curves: One ``(x, y)`` pair per run, ``x`` strictly increasing, both of shape ``(n_i,)``.
        points: Number of grid points (at least 1; 1 when the common range is a single x).

    Returns:
        ``grid`` of shape ``(points,)`` and ``values`` of shape ``(n_runs, points)``.

    Raises:
        ValueError: If there are no curves, a curve is empty, or the runs' x ranges do not overlap.
    """
    if not curves or any(len(x) == 0 for x, _ in curves):
        raise ValueError("align needs at least one non-empty curve")
    lo = max(float(x[0]) for x, _ in curves)
    hi = min(float(x[-1]) for x, _ in curves)
    if lo > hi:
        raise ValueError(
            f"runs do not overlap: the latest first point ({lo:g}) is after the earliest end ({hi:g})"
        )
    grid = np.array([lo]) if lo == hi else np.linspace(lo, hi, max(int(points), 2))
    return grid, resample(curves, grid)


def resample(curves: list[tuple[np.ndarray, np.ndarray]], grid: np.ndarray) -> np.ndarray:
    """Linear interpolation of each run at ``grid``; NaN where ``grid`` is outside a run's range.

    Args:
        curves: One ``(x, y)`` pair per run, ``x`` strictly increasing.
        grid: The x at which to evaluate, shape ``(m,)``.

    Returns:
        Values of shape ``(n_runs, m)``.
    """
    out = np.full((len(curves), len(grid)), np.nan)
    for i, (x, y) in enumerate(curves):
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        inside = (grid >= x[0]) & (grid <= x[-1])
        out[i, inside] = np.interp(grid[inside], x, y)
    return out


def t_quantile_975(df: int) -> float:
    """Student-t quantile ``t(0.975, df)`` (two-sided 95%): table up to 30, Cornish-Fisher beyond."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959963984540054  # normal 0.975 quantile; the series below is accurate to ~1e-5 for df > 30
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    )


@dataclass(frozen=True)
class Band:
    """Mean over runs with its 95% t confidence interval, per grid point (NaN where no run has data).

    Attributes:
        mean: Mean over runs. Shape ``(m,)``.
        std: Sample standard deviation over runs (``ddof=1``); NaN with fewer than two runs.
        lower: ``mean - t(0.975, n-1) * std / sqrt(n)``; NaN with fewer than two runs.
        upper: ``mean + t(0.975, n-1) * std / sqrt(n)``; NaN with fewer than two runs.
        n: Number of runs with data at each grid point.
    """

    mean: np.ndarray
    std: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    n: np.ndarray


def confidence_band(values: np.ndarray) -> Band:
    """95% confidence interval of the mean over runs (rows) at each grid point (columns).

    Args:
        values: Shape ``(n_runs, m)``; NaN marks "no data" and is left out of that column.
    """
    n = np.sum(~np.isnan(values), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        total = np.nansum(values, axis=0)
        mean = np.where(n > 0, total / np.maximum(n, 1), np.nan)
        sq = np.nansum((values - mean) ** 2, axis=0)
        std = np.where(n > 1, np.sqrt(sq / np.maximum(n - 1, 1)), np.nan)
    t = np.array([t_quantile_975(int(k) - 1) if k > 1 else np.nan for k in n])
    half = t * std / np.sqrt(np.maximum(n, 1))
    return Band(mean, std, mean - half, mean + half, n)


def lower_is_better(tag: str) -> bool:
    """Whether the best value of ``tag`` is its minimum (losses) rather than its maximum."""
    return tag.startswith("losses/") or "loss" in tag.rsplit("/", 1)[-1].lower()


