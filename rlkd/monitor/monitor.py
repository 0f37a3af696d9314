"""The monitor: per-step scores, their conformal thresholds and the alarm rules (FIPER, 2025).

Scores, each computed per step, averaged over a trailing window of ``window`` steps
(:func:`rlkd.monitor.conformal.windowed`) and compared with its own threshold:

=================  ============================================================================
``novelty``        distillation novelty (RND or RDD) of the policy's embedding (FIPER's first score)
``uncertainty``    the policy's action uncertainty where it depends on the state (categorical
                   entropy, Dreamer's actor std); for PPO's Gaussian, whose std is one number for
                   every state, the disagreement of a bootstrapped head ensemble
                   (:class:`~rlkd.monitor.scorers.EnsembleScorer`) (FIPER's second score)
``obs_novelty``    RND on raw observations (images pooled to 16 x 16): the usual approach, a baseline
``value``          minus the critic's value: a low predicted return, a baseline
``jitter``         the squared change of the policy's mode action since the last step: the other
                   candidate substitute for a state-independent uncertainty (0 at an episode's start)
=================  ============================================================================

Rules (:data:`RULES`): ``fiper`` raises an alarm at the first step where both ``novelty`` and
``uncertainty`` exceed their thresholds; the others alarm on one score. Each threshold is set on
calibration episodes that were not used to fit the scorers, so for any rule an in-distribution
successful episode raises a false alarm with probability at most ``alpha`` (the both-scores rule
alarms only where ``novelty`` does).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from rlkd.monitor.conformal import conformal_threshold, first_alarm, windowed
from rlkd.monitor.scorers import EnsembleScorer, NoveltyScorer
from rlkd.monitor.traces import Episode
from rlkd.monitor.views import DEFAULT_VIEW

SCORES = ("novelty", "uncertainty", "obs_novelty", "value", "jitter")
RULES: dict[str, tuple[str, ...]] = {
    "fiper": ("novelty", "uncertainty"),
    "fiper_jitter": ("novelty", "jitter"),
    "novelty": ("novelty",),
    "uncertainty": ("uncertainty",),
    "obs_novelty": ("obs_novelty",),
    "value": ("value",),
    "jitter": ("jitter",),
}


STATISTICS = ("max", "mean")


def scored_window(scores: np.ndarray, window: int, skip: int = 0, full: bool = False) -> np.ndarray:
    """Windowed per-step ``scores`` ``(T,)`` with the unscored steps at -inf (never an alarm).

    The first ``skip`` steps are dropped before windowing (no window reaches back into them); with
    ``full`` a step is scored only once its window holds ``window`` steps.
    """
    out = np.full(len(scores), -np.inf)
    kept = windowed(np.asarray(scores, np.float64)[skip:], window)
    if full:
        kept[: window - 1] = -np.inf
    out[skip:] = kept
    return out


def episode_statistic(windowed_scores: np.ndarray, how: str) -> float:
    """An episode's statistic of its windowed score: ``max`` or ``mean`` over the scored steps
    (-inf when no step is scored)."""
    scored = windowed_scores[np.isfinite(windowed_scores)]
    if not len(scored):
        return -np.inf
    return float(scored.max() if how == "max" else scored.mean())


def mode_change(mode: np.ndarray, previous: np.ndarray) -> np.ndarray:
    """Mean over action dimensions of the squared change of the mode action ``(B, A)`` -> ``(B,)``."""
    return np.square(np.asarray(mode, np.float64) - previous).mean(-1)


@dataclass
class MonitorConfig:
    """How the monitor is fitted and calibrated (saved in ``monitor/config.yaml``)."""

    alpha: float = 0.05
    """Bound on the false-alarm probability of an in-distribution successful episode."""
    window: int = 5
    """Steps each score is averaged over before it is compared with its threshold."""
    novelty: str = "rnd"
    """Distillation method of the novelty scores: rnd or rdd."""
    fit_fraction: float = 0.5
    """Share of the kept calibration episodes that fit the scorers; the rest set the thresholds."""
    updates: int = 1_000
    """Optimiser steps of each learned scorer (batches of 256 steps)."""
    lr: float = 1e-3
    heads: int = 5
    """Ensemble size of the PPO-Gaussian uncertainty substitute."""
    deterministic: bool = True
    """Roll the policy out with its mode action (a deployed policy), as in calibration."""
    seed: int = 0
    features: str = DEFAULT_VIEW
    """What the novelty score reads (:mod:`rlkd.monitor.views`): policy (the embedding the policy's
    heads read), obs (the normalised observation), layer1, layer2, ... (PPO: each hidden layer of the
    actor), all (PPO: obs and every layer concatenated), deter or stoch (Dreamer: the RSSM state)."""
    skip: int = 0
    """Steps at an episode's start that no score reads (the start state is the rarest of all)."""
    full_windows: bool = False
    """Score a step only once its window holds ``window`` steps (the first steps are noisy means)."""
    statistic: str = "mean"
    """Episode statistic the threshold-free measures rank episodes by: mean or max of the windowed
    score (alarms always fire at the first step above threshold, i.e. they read the max). ``mean``
    ranked failures best of every candidate on both of issue 36's tasks (AGV shifts, a pixel
    Dreamer in unseen colours: bench/results/monitor_candidates/summary.md)."""


class Monitor:
    """Fits the learned scores on some successful episodes and thresholds every score on the others.

    Args:
        cfg: Options.
        feature_dim: Size of the view the novelty score reads (``cfg.features``).
        obs_dim: Size of the pooled raw observation.
        action_dim: Size of the policy's mode action.
        state_uncertainty: Whether the policy reports a state-dependent action uncertainty (else the
            ensemble substitute is fitted).
        ensemble_dim: Size of the policy's embedding the ensemble reads (default: ``feature_dim``).
    """

    def __init__(
        self, cfg: MonitorConfig, feature_dim: int, obs_dim: int, action_dim: int, state_uncertainty: bool,
        ensemble_dim: int | None = None,
    ) -> None:  # fmt: skip
        self.cfg = cfg
        ensemble_dim = feature_dim if ensemble_dim is None else ensemble_dim
        self.dims = {
            "feature_dim": feature_dim,
            "obs_dim": obs_dim,
            "action_dim": action_dim,
            "state_uncertainty": state_uncertainty,
            "ensemble_dim": ensemble_dim,
        }
        torch.manual_seed(cfg.seed)  # the random targets and initial weights
        self.novelty = NoveltyScorer(feature_dim, cfg.novelty)
        self.obs_novelty = NoveltyScorer(obs_dim, cfg.novelty)
        self.ensemble = None if state_uncertainty else EnsembleScorer(ensemble_dim, action_dim, cfg.heads)
        self.thresholds: dict[str, float] = {}

    # ------------------------------------------------------------------------------------ fitting
    def fit(self, episodes: list[Episode]) -> dict[str, list[float]]:
        """Train the learned scorers on every step of ``episodes``; their loss curves."""
        steps = lambda name: np.concatenate([getattr(e, name) for e in episodes])  # noqa: E731
        cfg = self.cfg
        curves = {
            "novelty": self.novelty.fit(
                np.concatenate([e.view(cfg.features) for e in episodes]), cfg.updates, cfg.lr, cfg.seed
            ),
            "obs_novelty": self.obs_novelty.fit(steps("obs"), cfg.updates, cfg.lr, cfg.seed + 1),
        }
        if self.ensemble is not None:
            curves["uncertainty"] = self.ensemble.fit(
                steps("features"), steps("mode"), cfg.updates, cfg.lr, cfg.seed + 2
            )
        return curves

    def calibrate(self, episodes: list[Episode]) -> dict[str, Any]:
        """Set each score's threshold from the episode maxima of ``episodes`` (not used by :meth:`fit`)."""
        maxima = {name: np.array([self.scores(e)[name].max() for e in episodes]) for name in SCORES}
        # The alarm fires at the first step above threshold, so its statistic is the max (whatever
        # cfg.statistic says: that one only ranks episodes in the threshold-free measures).
        self.thresholds = {name: conformal_threshold(m, self.cfg.alpha) for name, m in maxima.items()}
        return {
            name: {
                "episodes": len(m),
                "threshold": self.thresholds[name],
                "quantiles": dict(
                    zip(("0", "50", "90", "100"), np.quantile(m, [0, 0.5, 0.9, 1]).tolist(), strict=True)
                ),
            }
            for name, m in maxima.items()
        }

    # ------------------------------------------------------------------------------------ scoring
    def raw_scores(
        self, features: np.ndarray, obs: np.ndarray, uncertainty: np.ndarray | None, value: np.ndarray,
        jitter: np.ndarray, view: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:  # fmt: skip
        """Per-step scores ``(T,)`` of steps ``(T, ...)`` before windowing (jitter: :func:`mode_change`;
        ``view``: what the novelty reads, ``cfg.features``; default the policy's ``features``)."""
        if uncertainty is None:
            assert self.ensemble is not None, "the policy reports no uncertainty: the ensemble stands in"
            uncertainty = self.ensemble(features)
        return {
            "novelty": self.novelty(features if view is None else view),
            "uncertainty": np.asarray(uncertainty, np.float64),
            "obs_novelty": self.obs_novelty(obs),
            "value": -np.asarray(value, np.float64),
            "jitter": np.asarray(jitter, np.float64),
        }

    def scores(self, episode: Episode) -> dict[str, np.ndarray]:
        """Windowed per-step scores ``(T,)`` of an episode, by score name."""
        previous = np.concatenate([episode.mode[:1], episode.mode[:-1]])  # no change at the first step
        jitter = mode_change(episode.mode, previous)
        view = episode.view(self.cfg.features)
        raw = self.raw_scores(episode.features, episode.obs, episode.uncertainty, episode.value, jitter, view)
        cfg = self.cfg
        return {name: scored_window(x, cfg.window, cfg.skip, cfg.full_windows) for name, x in raw.items()}

    def statistics(self, scores: dict[str, np.ndarray]) -> dict[str, float]:
        """Each score's episode statistic (``cfg.statistic``) from :meth:`scores`."""
        return {name: episode_statistic(s, self.cfg.statistic) for name, s in scores.items()}

    def alarm_steps(self, episode: Episode) -> dict[str, int | None]:
        """The first alarm step of each rule in ``episode`` (None: no alarm)."""
        return self.alarms(self.scores(episode))

    def alarms(self, scores: dict[str, np.ndarray]) -> dict[str, int | None]:
        """The first alarm step of each rule given an episode's :meth:`scores` (None: no alarm)."""
        exceed = {name: s > self.thresholds[name] for name, s in scores.items()}
        return {
            rule: first_alarm(np.logical_and.reduce([exceed[n] for n in names]))
            for rule, names in RULES.items()
        }

    # ------------------------------------------------------------------------------------ saving
    def state_dict(self) -> dict[str, Any]:
        """Tensors and plain values only, so ``monitor.pt`` loads with ``weights_only=True``."""
        return {
            "config": dataclasses.asdict(self.cfg),
            "dims": {k: bool(v) if k == "state_uncertainty" else int(v) for k, v in self.dims.items()},
            # cfg.features etc. are plain strings, ints and bools in "config": weights_only loads them
            "thresholds": {k: float(v) for k, v in self.thresholds.items()},
            "novelty": self.novelty.state_dict(),
            "obs_novelty": self.obs_novelty.state_dict(),
            "ensemble": None if self.ensemble is None else self.ensemble.state_dict(),
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Monitor:
        """The monitor :meth:`state_dict` saved (KeyError, TypeError or RuntimeError if it is not one)."""
        mon = cls(MonitorConfig(**state["config"]), **state["dims"])
        mon.novelty.load_state_dict(state["novelty"])
        mon.obs_novelty.load_state_dict(state["obs_novelty"])
        if mon.ensemble is not None:
            mon.ensemble.load_state_dict(state["ensemble"])
        mon.thresholds = dict(state["thresholds"])
        return mon
