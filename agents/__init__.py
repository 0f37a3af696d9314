"""Agents. Each agent module provides :class:`AgentModule` (what the CLI uses); the online ones
build an algorithm object (:class:`rlkd.core.loop.Algorithm`) and hand it to the shared loop."""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol, cast

import numpy as np

from rlkd.core.config import TrainConfig
from rlkd.errors import UserError


@dataclass
class Inspection:
    """One acting step of a policy with what run-time monitoring reads (:mod:`rlkd.monitor`).

    Attributes:
        actions: Env actions ``(N, ...)``, as :meth:`Policy.act` returns them.
        features: ``(N, F)`` float32: the layer before the policy's heads (PPO) or the model state
            the actor reads (Dreamer: deterministic and stochastic RSSM state).
        uncertainty: ``(N,)`` float32 action uncertainty where the policy's distribution depends on
            the state (categorical entropy, Dreamer's mean actor std); None where it does not (PPO's
            Gaussian has one std for every state).
        value: ``(N,)`` float32 extrinsic value estimate.
        mode: ``(N, A)`` float32 the action distribution's mode (Gaussian mean, or the one-hot of the
            most likely discrete action).
    """

    actions: np.ndarray
    features: np.ndarray
    uncertainty: np.ndarray | None
    value: np.ndarray
    mode: np.ndarray


class Policy(Protocol):
    """A trained policy for evaluation, data collection and run-time monitoring."""

    obs_shape: tuple[int, ...]

    def act(self, obs: np.ndarray, first: np.ndarray, deterministic: bool) -> np.ndarray:
        """Env actions (N, ...) for observations (N, ...); ``first`` marks each env's episode start."""

    def inspect(self, obs: np.ndarray, first: np.ndarray, deterministic: bool) -> Inspection:
        """:meth:`act` with the features, uncertainty and value of the step (one step of state, as act)."""


class AgentModule(Protocol):
    """What an agent module provides: every member below, in every agent module."""

    CONFIG: type[TrainConfig]
    """Its config dataclass."""
    PRESETS: Mapping[str, Mapping[str, Any]]
    """Preset name -> field overrides."""
    DISTRIBUTED: bool
    """Whether it trains data-parallel over ranks (``--nproc``, torchrun); :mod:`rlkd.core.distributed`."""

    def label(self, cfg: Any) -> str:
        """Run-folder label (ppo, ppo-rnd, dreamer, diswm, ...)."""

    def finalize(self, cfg: Any) -> Any:
        """The config with values derived from its inputs (pretrain: the dataset's env id)."""

    def env_kwargs_for(self, cfg: Any) -> dict[str, Any]:
        """``make_vec`` keywords of a run of ``cfg`` (Dreamer adds the DMC action repeat)."""

    def train(self, cfg: Any, run: Any, checkpoint: dict[str, Any] | None) -> None:
        """Train into ``run`` (a locked :class:`rlkd.core.run.Run`; None on ranks other than 0 of a
        distributed job), resuming from ``checkpoint`` if given."""

    def load_policy(self, run: Any, checkpoint: dict[str, Any], device: str) -> Policy:
        """The policy a checkpoint of ``run`` holds (pretrain: a UserError, it learns none)."""


# agent name -> module; diswm is the Dreamer loop with the teacher-distillation switch on.
AGENTS = {
    "ppo": "rlkd.agents.ppo",
    "dreamer": "rlkd.agents.dreamer",
    "diswm": "rlkd.agents.dreamer",
    # Offline action-free pretraining is a run like any other (resume, report), driven by `rlkd pretrain`.
    "pretrain": "rlkd.agents.pretrain",
}


def agent_module(name: str) -> AgentModule:
    """Import the module that implements agent ``name``."""
    if name not in AGENTS:
        import difflib

        close = difflib.get_close_matches(name, list(AGENTS), n=2)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise UserError(f"unknown agent {name!r}{hint} (known: {', '.join(AGENTS)})")
    return cast(AgentModule, importlib.import_module(AGENTS[name]))
