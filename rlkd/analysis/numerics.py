"""Alignment of curves, and the confidence band over seeds."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats


# ===================================================================== numerics
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


@dataclass(frozen=True)
class Band:
    """Mean over runs with a 95% interval, per grid point (NaN where no run has data).

    Attributes:
        mean: Mean over runs. Shape ``(m,)``.
        std: Sample standard deviation over runs (``ddof=1``); NaN with fewer than two runs.
        lower: Lower end of the interval (:func:`confidence_band`: Student t; :func:`bootstrap_band`:
            percentile bootstrap); NaN with fewer than two runs.
        upper: Upper end, likewise.
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
    t = np.where(n > 1, stats.t.ppf(0.975, np.maximum(n - 1, 1)), np.nan)
    half = t * std / np.sqrt(np.maximum(n, 1))
    return Band(mean, std, mean - half, mean + half, n)


def bootstrap_band(values: np.ndarray, resamples: int = 2000, seed: int = 0) -> Band:
    """Mean over runs with its 95% percentile-bootstrap interval per column (``scipy.stats.bootstrap``).

    What ``rlkd report`` draws (rliable's recommendation for few seeds): unlike the t interval it
    never leaves the range of the runs' values (two seeds: exactly [min, max]), so a return that
    cannot be negative never gets a negative band. Fixed ``seed``: the same runs give the same band.

    Args:
        values: Shape ``(n_runs, m)``; NaN marks "no data" and is left out of that column.
        resamples: Bootstrap resamples.
        seed: Seed of the resampling.
    """
    band = confidence_band(values)  # mean, std and n; its t bounds are replaced
    lower, upper = np.full(len(band.n), np.nan), np.full(len(band.n), np.nan)
    for k in np.unique(band.n[band.n > 1]):
        cols = np.flatnonzero(band.n == k)
        data = np.sort(values[:, cols], axis=0)[:k]  # each column's k values (NaN sorts last)
        res = stats.bootstrap((data,), np.mean, axis=0, vectorized=True, n_resamples=resamples,
                              method="percentile", rng=np.random.default_rng(seed))  # fmt: skip
        lower[cols], upper[cols] = res.confidence_interval.low, res.confidence_interval.high
    return Band(band.mean, band.std, lower, upper, band.n)


def lower_is_better(tag: str) -> bool:
    """Whether the best value of ``tag`` is its minimum (losses) rather than its maximum."""
    return tag.startswith("losses/") or "loss" in tag.rsplit("/", 1)[-1].lower()




def probability_of_improvement(x: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """P(X > Y) + P(X = Y) / 2 for a random run of each group, with a 95% bootstrap interval.

    rliable's probability of improvement on one task: the Mann-Whitney U statistic of ``x`` over
    ``y`` divided by ``len(x) * len(y)``; the interval resamples both groups independently.

    Returns:
        (estimate, lower, upper); the interval is NaN when a group has a single run.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)

    def poi(a: np.ndarray, b: np.ndarray, axis: int = -1) -> np.ndarray:
        return stats.mannwhitneyu(a, b, axis=axis).statistic / (a.shape[axis] * b.shape[axis])

    estimate = float(poi(x, y))
    if len(x) < 2 or len(y) < 2:
        return estimate, math.nan, math.nan
    res = stats.bootstrap((x, y), poi, vectorized=True, n_resamples=2000, method="percentile",
                          rng=np.random.default_rng(seed))  # fmt: skip
    return estimate, float(res.confidence_interval.low), float(res.confidence_interval.high)


def iqm_interval(values: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """Interquartile mean (rliable: ``scipy.stats.trim_mean(x, 0.25)``) of the runs' values, with a
    95% percentile-bootstrap interval; the interval is NaN for a single run."""
    x = np.asarray(values, np.float64)
    estimate = float(stats.trim_mean(x, 0.25))
    if len(x) < 2:
        return estimate, math.nan, math.nan
    res = stats.bootstrap((x,), lambda a, axis=-1: stats.trim_mean(a, 0.25, axis=axis), vectorized=True,
                          n_resamples=2000, method="percentile", rng=np.random.default_rng(seed))  # fmt: skip
    return estimate, float(res.confidence_interval.low), float(res.confidence_interval.high)


def mean_difference_interval(x: np.ndarray, y: np.ndarray, seed: int = 0) -> tuple[float, float, float]:
    """mean(x) - mean(y) of two independent groups of runs, with a 95% percentile-bootstrap interval.

    Each group is resampled on its own (runs of two configurations share no randomness that pairs
    them), as :func:`probability_of_improvement` does.

    Returns:
        (estimate, lower, upper); the interval is NaN when a group has a single run.
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    estimate = float(x.mean() - y.mean())
    if len(x) < 2 or len(y) < 2:
        return estimate, math.nan, math.nan
    res = stats.bootstrap((x, y), lambda a, b, axis=-1: a.mean(axis) - b.mean(axis), vectorized=True,
                          n_resamples=2000, method="percentile", rng=np.random.default_rng(seed))  # fmt: skip
    return estimate, float(res.confidence_interval.low), float(res.confidence_interval.high)
