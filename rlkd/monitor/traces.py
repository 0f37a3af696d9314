"""Per-step records of complete episodes, taken while a policy acts (what the monitor scores).

:class:`Tracer` is a policy in front of the real one: ``act`` calls the policy's ``inspect`` and
keeps each env's steps; :func:`rlkd.analysis.evaluate.run_episodes` tells it when an env's episode ended and
whether that episode counts, so the traces are exactly the episodes an evaluation counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from rlkd.agents import Policy
from rlkd.monitor.views import DEFAULT_VIEW, raw_input, step_views

__all__ = ["Episode", "Tracer", "raw_input"]


@dataclass
class Episode:
    """One episode's steps ``(T, ...)`` as the policy saw them and how it ended."""

    obs: np.ndarray
    features: np.ndarray
    uncertainty: np.ndarray | None
    value: np.ndarray
    mode: np.ndarray
    success: bool | None = None
    ret: float = 0.0
    views: dict[str, np.ndarray] = field(default_factory=dict)
    """Other views of the steps (:mod:`rlkd.monitor.views`) by name, ``(T, D)`` each."""

    @property
    def length(self) -> int:
        return len(self.value)

    @property
    def failed(self) -> bool | None:
        """Whether the episode failed (did not succeed); None for envs that report no success."""
        return None if self.success is None else not self.success

    def view(self, name: str) -> np.ndarray:
        """The steps' view ``name`` ``(T, D)``; ``all`` is assembled from ``obs`` and the layers when
        it was not kept (it repeats them: keeping it would double the trace's memory)."""
        if name == DEFAULT_VIEW:
            return self.features
        if name == "all" and name not in self.views:
            layers = sorted((k for k in self.views if k.startswith("layer")), key=lambda k: int(k[5:]))
            return np.concatenate([self.views["obs"], *(self.views[k] for k in layers)], 1)
        return self.views[name]


class Tracer:
    """Acts as ``policy`` does and records every step of the episodes :meth:`end` counts.

    Args:
        policy: A trained policy (its ``inspect`` gives features, uncertainty and value).
        views: The views (:mod:`rlkd.monitor.views`) kept besides the features; None: every view
            the policy has but ``all`` (:meth:`Episode.view` assembles it).
    """

    FIELDS = ("obs", "features", "uncertainty", "value", "mode")

    def __init__(self, policy: Policy, views: tuple[str, ...] | None = ()) -> None:
        self.policy = policy
        self.obs_shape = policy.obs_shape
        self.keep = views
        self.episodes: list[Episode] = []
        self.available: list[str] = []
        self._open: dict[int, dict[str, list[np.ndarray]]] = {}

    def act(self, obs: np.ndarray, first: np.ndarray, deterministic: bool) -> np.ndarray:
        step, views = step_views(self.policy, obs, first, deterministic)
        self.available = sorted({*views, "all"} if "layer1" in views else views)
        rows = {
            "obs": raw_input(obs),
            "features": step.features,
            "uncertainty": step.uncertainty,
            "value": step.value,
            "mode": step.mode,
        }
        for name, batch in views.items():
            if name not in (DEFAULT_VIEW, "all") and self._kept(name):
                rows[f"view:{name}"] = batch
        for i in range(len(obs)):
            record = self._open.setdefault(i, {})
            for name, batch in rows.items():
                if batch is not None:
                    record.setdefault(name, []).append(batch[i])
        return step.actions

    def _kept(self, name: str) -> bool:
        """Whether view ``name`` is recorded (``all`` is assembled from ``obs`` and the layers)."""
        if self.keep is None or name in self.keep:
            return True
        return "all" in self.keep and (name == "obs" or name.startswith("layer"))

    def end(self, i: int, counted: bool, success: bool | None, ret: float) -> None:
        """Env ``i``'s episode ended: keep its steps if the evaluation counts it."""
        record = self._open.pop(i, None)
        if not counted or record is None or not record.get("value"):
            return
        arrays = {name: np.stack(rows) for name, rows in record.items()}
        views = {name[5:]: arrays.pop(name) for name in list(arrays) if name.startswith("view:")}
        arrays.setdefault("uncertainty", None)  # type: ignore[arg-type]  # the policy reports none
        self.episodes.append(Episode(**arrays, success=success, ret=ret, views=views))  # type: ignore[arg-type]
