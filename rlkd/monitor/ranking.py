"""Threshold-free measures of a score: how well it ranks failures above successes, with no alarm rule.

An alarm rule's TPR and FPR depend on its threshold; these do not. For every monitor score:

* ``auroc`` and ``ap`` of the **episode statistic** (by default the mean of the windowed score
  over the episode; ``--statistic max``: its maximum, the statistic calibration thresholds), failed
  episodes positive;
* ``early_auroc`` and ``early_ap``: the windowed score **at step t** predicts a failure within the
  next ``horizon`` steps: positives are the last ``horizon`` steps of failed episodes (the failing
  step is the episode's last), negatives every step of successful episodes. The earlier steps of a
  failed episode are left out: the failure may already be under way there, so they are neither a
  clean positive nor a clean negative.

AUROC is the Mann-Whitney U statistic over ``n_pos * n_neg`` (ties count one half): the probability
that a random positive scores above a random negative; chance is 0.5. AP is the step-wise sum of the
precision-recall curve, ``sum_k (R_k - R_{k-1}) P_k`` over distinct thresholds, tied scores entering
together; chance is the share of positives. Intervals are 95% percentile bootstraps over episodes
(steps of one episode are not independent): a resample reweights every step of an episode by the
number of times the episode was drawn.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

RESAMPLES = 2_000
DEFAULT_HORIZON = 20
"""Steps ahead the early-warning measure looks (20 AGV control periods of 0.25 s: 5 s)."""
_CELLS = 20_000_000  # floats per bootstrap chunk (~160 MB): bounds the memory of (resamples, steps)


class _Groups:
    """Points sorted by score, descending, in groups of equal score (what ties need)."""

    def __init__(self, scores: np.ndarray, positive: np.ndarray) -> None:
        scores = np.asarray(scores, np.float64)
        self.order = np.argsort(-scores, kind="stable")
        ranked = scores[self.order]
        self.starts = np.flatnonzero(np.r_[True, ranked[1:] != ranked[:-1]])
        self.positive = np.asarray(positive, bool)[self.order]

    def sums(self, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Weighted positives and negatives per group ``(B, G)`` for point weights ``(B, N)``."""
        w = weights[:, self.order]
        pos = np.add.reduceat(np.where(self.positive, w, 0.0), self.starts, axis=1)
        neg = np.add.reduceat(np.where(self.positive, 0.0, w), self.starts, axis=1)
        return pos, neg


def _auroc(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Mann-Whitney AUROC ``(B,)`` from group sums ``(B, G)`` in descending score order."""
    below = neg.sum(1, keepdims=True) - np.cumsum(neg, 1)  # negatives strictly below each group
    u = (pos * (below + 0.5 * neg)).sum(1)
    total = pos.sum(1) * neg.sum(1)
    return np.divide(u, total, out=np.full(len(u), np.nan), where=total > 0)


def _average_precision(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Step-wise AP ``(B,)`` from group sums ``(B, G)`` in descending score order."""
    tp, seen = np.cumsum(pos, 1), np.cumsum(pos + neg, 1)
    precision = np.divide(tp, seen, out=np.zeros_like(tp), where=seen > 0)
    total = pos.sum(1)
    gain = (pos * precision).sum(1)  # recall rises by pos / total at each group
    return np.divide(gain, total, out=np.full(len(gain), np.nan), where=(total > 0) & (neg.sum(1) > 0))


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """AUROC of ``scores`` ``(N,)`` for ``positive`` ``(N,)`` bool (NaN without both classes)."""
    groups = _Groups(scores, positive)
    return float(_auroc(*groups.sums(np.ones((1, len(groups.order)))))[0])


def average_precision(scores: np.ndarray, positive: np.ndarray) -> float:
    """Average precision of ``scores`` ``(N,)`` for ``positive`` ``(N,)`` bool (NaN without both classes)."""
    groups = _Groups(scores, positive)
    return float(_average_precision(*groups.sums(np.ones((1, len(groups.order)))))[0])


def _interval(values: np.ndarray) -> list[float]:
    finite = values[np.isfinite(values)]
    if not len(finite):
        return [float("nan"), float("nan")]
    return [float(v) for v in np.percentile(finite, [2.5, 97.5])]


def bootstrap(
    scores: np.ndarray, positive: np.ndarray, episode: np.ndarray, n_episodes: int, resamples: int, seed: int
) -> dict[str, dict[str, object]]:
    """AUROC and AP of points ``(N,)`` with 95% intervals from resampling the episodes they belong to.

    Args:
        scores: Score of each point.
        positive: Whether each point is a positive (a failure).
        episode: Index in ``[0, n_episodes)`` of the episode each point belongs to.
        n_episodes: Number of episodes (those with no points count too: they are drawn as well).
        resamples: Bootstrap resamples.
        seed: Seed of the resampling (the same seed draws the same episodes for every score).
    """
    groups = _Groups(scores, positive)
    one = groups.sums(np.ones((1, len(scores))))
    draws = np.random.default_rng(seed).integers(n_episodes, size=(resamples, n_episodes))
    counts = np.stack([np.bincount(d, minlength=n_episodes) for d in draws]).astype(np.float64)
    chunk = max(1, _CELLS // max(1, len(scores)))
    boots: dict[str, list[np.ndarray]] = {"auroc": [], "ap": []}
    for lo in range(0, resamples, chunk):
        sums = groups.sums(counts[lo : lo + chunk][:, episode])
        boots["auroc"].append(_auroc(*sums))
        boots["ap"].append(_average_precision(*sums))
    point = {"auroc": _auroc(*one)[0], "ap": _average_precision(*one)[0]}
    return {
        name: {"value": float(point[name]), "ci95": _interval(np.concatenate(boots[name]))} for name in point
    }


def early_points(
    windowed: Sequence[np.ndarray], failed: Sequence[bool], horizon: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The early-warning points of episodes: scores, labels and episode indices ``(N,)`` each.

    Args:
        windowed: Each episode's windowed score ``(T,)``.
        failed: Whether each episode failed.
        horizon: A step is positive when the episode fails within the next ``horizon`` steps (its
            last ``horizon`` steps); the earlier steps of failed episodes are left out.
    """
    scores, labels, index = [], [], []
    for i, (s, f) in enumerate(zip(windowed, failed, strict=True)):
        kept = np.asarray(s, np.float64)[-horizon:] if f else np.asarray(s, np.float64)
        scores.append(kept)
        labels.append(np.full(len(kept), bool(f)))
        index.append(np.full(len(kept), i))
    if not scores:
        return np.zeros(0), np.zeros(0, bool), np.zeros(0, np.int64)
    return np.concatenate(scores), np.concatenate(labels), np.concatenate(index)


def threshold_free(
    windowed: dict[str, list[np.ndarray]],
    statistic: dict[str, np.ndarray],
    failed: Sequence[bool],
    horizon: int = DEFAULT_HORIZON,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> dict[str, dict[str, object]]:
    """Every score's ``auroc``, ``ap``, ``early_auroc`` and ``early_ap`` with intervals.

    Args:
        windowed: Score name -> each episode's windowed score ``(T,)``.
        statistic: Score name -> each episode's statistic ``(E,)``.
        failed: Whether each of the ``E`` episodes failed.
        horizon: Steps ahead of the early-warning measure.
        resamples: Bootstrap resamples over episodes.
        seed: Seed of the resampling.
    """
    flags = np.asarray(failed, bool)
    n = len(flags)
    out: dict[str, dict[str, object]] = {}
    for name, per_episode in windowed.items():
        whole = bootstrap(statistic[name], flags, np.arange(n), n, resamples, seed)
        early = bootstrap(*early_points(per_episode, flags, horizon), n, resamples, seed)
        out[name] = {**whole, "early_auroc": early["auroc"], "early_ap": early["ap"]}
    return out


def auroc_difference(
    a: np.ndarray, b: np.ndarray, positive: np.ndarray, episode: np.ndarray, n_episodes: int,
    resamples: int = RESAMPLES, seed: int = 0,
) -> dict[str, object]:  # fmt: skip
    """AUROC of scores ``a`` minus that of ``b`` on the same points, with a paired 95% bootstrap
    interval over episodes (both measured on every resample: their errors largely cancel)."""
    draws = np.random.default_rng(seed).integers(n_episodes, size=(resamples, n_episodes))
    counts = np.stack([np.bincount(d, minlength=n_episodes) for d in draws]).astype(np.float64)
    chunk = max(1, _CELLS // max(1, len(a)))
    ga, gb = _Groups(a, positive), _Groups(b, positive)
    diffs = []
    for lo in range(0, resamples, chunk):
        w = counts[lo : lo + chunk][:, episode]
        diffs.append(_auroc(*ga.sums(w)) - _auroc(*gb.sums(w)))
    point = auroc(a, positive) - auroc(b, positive)
    return {"value": float(point), "ci95": _interval(np.concatenate(diffs))}
