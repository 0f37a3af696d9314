"""Split conformal thresholds over windowed per-step scores (FIPER's calibration, no failure data).

A score is computed at every step of an episode and averaged over a trailing window; an episode's
statistic is the maximum of its windowed scores. Given ``n`` calibration episodes (successful,
in-distribution, not used to fit the scorers), the threshold is the ``ceil((n + 1)(1 - alpha))``-th
smallest of their statistics: a new exchangeable episode's statistic exceeds it with probability at
most ``alpha`` (Vovk et al. 2005; Angelopoulos and Bates 2021, section 1.1). "Exceeds" is strict, so
ties with the threshold raise no alarm.
"""

from __future__ import annotations

import math

import numpy as np

from rlkd.errors import UserError


def rank(n: int, alpha: float) -> int:
    """The 1-based rank ``ceil((n + 1)(1 - alpha))`` of the threshold among ``n`` sorted scores."""
    # The tolerance keeps exact products (n = 19, alpha = 0.05: 19.000000000000004) at their value.
    return math.ceil((n + 1) * (1.0 - alpha) - 1e-9)


def min_calibration_episodes(alpha: float) -> int:
    """The fewest calibration episodes for which level ``alpha`` has a finite threshold (19 at 0.05)."""
    _check_alpha(alpha)
    n = 1
    while rank(n, alpha) > n:
        n += 1
    return n


def conformal_threshold(scores: np.ndarray, alpha: float) -> float:
    """The split-conformal threshold of calibration ``scores`` ``(n,)`` at level ``alpha``.

    Raises:
        UserError: Too few scores for ``alpha`` (the rank would be past the largest score).
    """
    _check_alpha(alpha)
    n = len(scores)
    k = rank(n, alpha)
    if k > n:
        raise UserError(
            f"alpha {alpha} needs at least {min_calibration_episodes(alpha)} calibration episodes, got {n}; "
            "run more --episodes or give a larger --alpha"
        )
    return float(np.sort(np.asarray(scores, dtype=np.float64))[k - 1])


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise UserError(f"--alpha must be between 0 and 1 (exclusive), got {alpha}")


def windowed(scores: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean of an episode's per-step ``scores`` ``(T,)`` over ``window`` steps ``(T,)``; the
    first steps average what there is so far."""
    if window < 1:
        raise UserError(f"--window must be at least 1, got {window}")
    x = np.asarray(scores, dtype=np.float64)
    total = np.cumsum(x)
    total[window:] = total[window:] - total[:-window]
    return total / np.minimum(np.arange(1, len(x) + 1), window)


def first_alarm(exceeds: np.ndarray) -> int | None:
    """The first step at which ``exceeds`` ``(T,)`` (bool) holds, or None."""
    hits = np.flatnonzero(exceeds)
    return int(hits[0]) if len(hits) else None
