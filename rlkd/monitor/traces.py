"""Per-step records of complete episodes, taken while a policy acts (what the monitor scores).

:class:`Tracer` is a policy in front of the real one: ``act`` calls the policy's ``inspect`` and
keeps each env's steps; :func:`rlkd.analysis.evaluate.run_episodes` tells it when an env's episode ended and
whether that episode counts, so the traces are exactly the episodes an evaluation counts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from rlkd.agents import Policy

POOLED_SIDE = 16
"""Images are average-pooled to at most this side per channel for the raw-observation baseline."""


def raw_input(obs: np.ndarray) -> np.ndarray:
    """Observations ``(N, *obs_shape)`` as float32 vectors ``(N, D)``: images (rank 3) area-pooled to
    at most ``POOLED_SIDE`` per side and scaled to [0, 1], anything else flattened."""
    obs = np.asarray(obs)
    if obs.ndim == 4:
        channels_last = obs.shape[-1] <= 4
        x = obs if channels_last else obs.transpose(0, 2, 3, 1)
        n, h, w, c = x.shape
        f = max(1, h // POOLED_SIDE)
        x = x[:, : h // f * f, : w // f * f].astype(np.float32)
        x = x.reshape(n, h // f, f, w // f, f, c).mean((2, 4))
        return (x / 255.0).reshape(n, -1).astype(np.float32)
    return obs.reshape(len(obs), -1).astype(np.float32)


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

    @property
    def length(self) -> int:
        return len(self.value)

    @property
    def failed(self) -> bool | None:
        """Whether the episode failed (did not succeed); None for envs that report no success."""
        return None if self.success is None else not self.success


class Tracer:
    """Acts as ``policy`` does and records every step of the episodes :meth:`end` counts.

    Args:
        policy: A trained policy (its ``inspect`` gives features, uncertainty and value).
    """

    FIELDS = ("obs", "features", "uncertainty", "value", "mode")

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.obs_shape = policy.obs_shape
        self.episodes: list[Episode] = []
        self._open: dict[int, dict[str, list[np.ndarray]]] = {}

    def act(self, obs: np.ndarray, first: np.ndarray, deterministic: bool) -> np.ndarray:
        step = self.policy.inspect(obs, first, deterministic)
        rows = {
            "obs": raw_input(obs),
            "features": step.features,
            "uncertainty": step.uncertainty,
            "value": step.value,
            "mode": step.mode,
        }
        for i in range(len(obs)):
            record = self._open.setdefault(i, {name: [] for name in self.FIELDS})
            for name, batch in rows.items():
                if batch is not None:
                    record[name].append(batch[i])
        return step.actions

    def end(self, i: int, counted: bool, success: bool | None, ret: float) -> None:
        """Env ``i``'s episode ended: keep its steps if the evaluation counts it."""
        record = self._open.pop(i, None)
        if not counted or record is None or not record["value"]:
            return
        arrays = {name: np.stack(rows) if rows else None for name, rows in record.items()}
        self.episodes.append(Episode(**arrays, success=success, ret=ret))  # type: ignore[arg-type]
