"""The Python API: train and load runs without the command line.

    >>> import rlkd
    >>> run = rlkd.train(agent="ppo", preset="debug", env_id="CartPole-v1", seed=3)
    >>> run.path, run.metrics["charts/episodic_return"]
    >>> policy = rlkd.load(run.path)
    >>> action = policy.predict(obs)                  # one observation, or a batch (N, *obs_shape)

:func:`train` takes the same fields as ``rlkd train`` (keyword arguments named as the config
fields: ``env_id``, ``total_steps``, ``learning_rate``...) and resolves them the same way:
field defaults < ``preset`` < ``config`` YAML file < keyword arguments. Errors are
:class:`rlkd.errors.UserError` with the message the command line prints.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rlkd.agents import AgentModule, Policy, agent_module


@dataclass
class TrainedRun:
    """A finished run.

    Attributes:
        path: Its run folder (config.yaml, TensorBoard event files, checkpoints/).
        config: The resolved config it trained with.
        metrics: The last logged value of each ``charts/`` tag (e.g. ``charts/episodic_return``).
    """

    path: Path
    config: dict[str, Any]
    metrics: dict[str, float]


def train(
    agent: str = "ppo", preset: str | None = None, config: str | Path | None = None, **fields: Any
) -> TrainedRun:
    """Train an agent as ``rlkd train`` does and return the finished run.

    Args:
        agent: ppo, dreamer, diswm or pretrain.
        preset: A preset of the agent (debug, classic, atari, cpu...).
        config: A YAML file of field: value.
        **fields: Config fields, e.g. ``env_id="CartPole-v1"``, ``total_steps=100_000``, ``seed=2``.
    """
    from rlkd.analysis import load_run
    from rlkd.config import resolve, to_dict

    module = agent_module(agent)
    yaml_file = str(config) if config else None
    cfg = resolve(module.CONFIG, module.PRESETS, preset, yaml_file, {**fields, "agent": agent})
    if hasattr(module, "finalize"):  # values derived from inputs, e.g. a dataset's env id
        cfg = module.finalize(cfg)
    path = run_training(module, cfg)
    scalars = load_run(path).scalars
    charts = {tag: c for tag, c in scalars.items() if tag.startswith("charts/") and len(c.values)}
    metrics = {tag: float(c.values[-1]) for tag, c in charts.items()}
    return TrainedRun(path, to_dict(cfg), metrics)


def run_training(module: AgentModule, cfg: Any, listeners: Sequence[Callable[..., None]] = ()) -> Path:
    """Create and lock the run folder, train, release; a start that fails leaves no folder.

    ``listeners`` are called with (step, scalars) after every log (see :attr:`rlkd.run.Run.listeners`).
    """
    from rlkd.run import Run, keep_freed_memory

    run = Run.create(cfg, module.label(cfg))
    run.listeners.extend(listeners)
    run.on_start(f"run folder: {run.path}")
    keep_freed_memory()
    try:
        module.train(cfg, run, None)
    except BaseException:
        # A start that failed before writing anything (bad env id, wrong spaces) leaves no folder.
        run.discard_if_never_started()
        raise
    finally:
        run.release()
    print(f"done: {run.path} (TensorBoard: rlkd tb {run.path})", file=sys.stderr)
    return run.path


class LoadedPolicy:
    """A run's trained policy, acting on one observation or a batch (SB3's ``predict``).

    Stateful policies (Dreamer's latent) follow each env's episode: pass ``episode_start`` (bool per
    env) at the first step of new episodes, or call :meth:`reset`.
    """

    def __init__(self, policy: Policy, obs_shape: tuple[int, ...]) -> None:
        self.policy, self.obs_shape = policy, obs_shape
        self._first: np.ndarray | None = None

    def reset(self) -> None:
        """Start new episodes in every env at the next :meth:`predict`."""
        self._first = None

    def predict(
        self, obs: np.ndarray, deterministic: bool = False, episode_start: np.ndarray | None = None
    ) -> np.ndarray:
        """Actions for ``obs``: ``obs_shape`` -> one action, ``(N, *obs_shape)`` -> ``(N, ...)``."""
        obs = np.asarray(obs)
        single = obs.shape == self.obs_shape
        batch = obs[None] if single else obs
        if batch.shape[1:] != self.obs_shape:
            want = self.obs_shape
            raise ValueError(f"expected observations of shape {want} or (N, *{want}), got {obs.shape}")
        if episode_start is not None:
            first = np.asarray(episode_start, dtype=bool).reshape(len(batch))
        elif self._first is None or len(self._first) != len(batch):
            first = np.ones(len(batch), dtype=bool)
        else:
            first = self._first
        actions = self.policy.act(batch, first, deterministic)
        self._first = np.zeros(len(batch), dtype=bool)
        return actions[0] if single else actions


def load(run_dir: str | Path, checkpoint: str | int = "latest", device: str = "cpu") -> LoadedPolicy:
    """The policy of ``checkpoint`` (latest, best or a step) of the run in ``run_dir``."""
    from rlkd.evaluate import load_run_policy

    _, _, _, policy = load_run_policy(Path(run_dir), checkpoint, device)
    return LoadedPolicy(policy, tuple(policy.obs_shape))
