"""Per-step monitoring for people embedding a policy: ``rlkd.load(run).monitor()``.

>>> scorer = rlkd.load("runs/ppo-agv").monitor()
>>> actions, step = scorer.predict(obs, episode_start=first)   # obs (N, *obs_shape)
>>> step.alarm                                                  # (N,) bool, FIPER's rule
>>> step.scores["novelty"], step.thresholds["novelty"]          # windowed score (N,), its threshold
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlkd.agents import Policy
from rlkd.monitor.monitor import RULES, SCORES, Monitor, mode_change
from rlkd.monitor.views import raw_input, step_views


@dataclass
class MonitorStep:
    """The monitor's reading of one step of ``N`` envs."""

    scores: dict[str, np.ndarray]
    """Windowed score ``(N,)`` by name (:data:`rlkd.monitor.monitor.SCORES`)."""
    thresholds: dict[str, float]
    rules: dict[str, np.ndarray]
    """Whether each rule's scores all exceed their thresholds at this step ``(N,)`` bool."""

    @property
    def alarm(self) -> np.ndarray:
        """FIPER's alarm ``(N,)``: both the novelty and the uncertainty score above threshold."""
        return self.rules["fiper"]


class OnlineMonitor:
    """Acts with ``policy`` and scores every step with ``monitor`` (windows kept per env).

    Args:
        policy: The run's policy.
        monitor: The calibrated monitor of the same run.
    """

    def __init__(self, policy: Policy, monitor: Monitor) -> None:
        self.policy, self.monitor = policy, monitor
        self.window = monitor.cfg.window
        self._recent: np.ndarray | None = None  # (N, scores, window) raw scores, newest last
        self._count: np.ndarray | None = None  # (N,) scored steps in the current episode, up to window
        self._t: np.ndarray | None = None  # (N,) steps since the episode's start
        self._mode: np.ndarray | None = None  # (N, A) the last step's mode action

    def predict(
        self, obs: np.ndarray, episode_start: np.ndarray | None = None, deterministic: bool | None = None
    ) -> tuple[np.ndarray, MonitorStep]:
        """Actions ``(N, ...)`` for ``obs`` ``(N, *obs_shape)`` and the monitor's reading of the step."""
        obs = np.asarray(obs)
        n = len(obs)
        if self._recent is None or len(self._recent) != n:
            self._recent = np.zeros((n, len(SCORES), self.window))
            self._count, self._t = np.zeros(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
            episode_start = np.ones(n, dtype=bool)
        first = np.zeros(n, bool) if episode_start is None else np.asarray(episode_start, bool).reshape(n)
        assert self._count is not None and self._t is not None
        self._count[first], self._t[first] = 0, 0
        cfg = self.monitor.cfg
        mode = cfg.deterministic if deterministic is None else deterministic
        step, views = step_views(self.policy, obs, first, mode)
        previous = step.mode if self._mode is None or len(self._mode) != n else self._mode.copy()
        previous[first] = step.mode[first]  # no change at an episode's first step
        self._mode = step.mode
        jitter = mode_change(step.mode, previous)
        raw = self.monitor.raw_scores(step.features, raw_input(obs), step.uncertainty, step.value, jitter,
                                      views.get(cfg.features, step.features))  # fmt: skip
        # Steps before cfg.skip enter no window (as monitor.scored_window drops them).
        live = self._t >= cfg.skip
        self._recent[live] = np.roll(self._recent[live], -1, axis=2)
        self._recent[live, :, -1] = np.stack([raw[name] for name in SCORES], 1)[live]
        self._count[live] = np.minimum(self._count[live] + 1, self.window)
        self._t += 1
        # Mean of the episode's last min(scored steps, window) raw scores (as conformal.windowed).
        kept = np.arange(self.window)[None, :] >= self.window - self._count[:, None]  # (N, window)
        means = (self._recent * kept[:, None, :]).sum(2) / np.maximum(self._count, 1)[:, None]
        scored = live & (self._count >= (self.window if cfg.full_windows else 1))
        means[~scored] = -np.inf
        scores = {name: means[:, k] for k, name in enumerate(SCORES)}
        thresholds = self.monitor.thresholds
        rules = {
            rule: np.logical_and.reduce([scores[s] > thresholds[s] for s in names])
            for rule, names in RULES.items()
        }
        return step.actions, MonitorStep(scores, dict(thresholds), rules)
