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
from typing import TYPE_CHECKING, Any

import numpy as np

from rlkd.agents import AgentModule, Policy, agent_module

if TYPE_CHECKING:
    from rlkd.monitor.online import OnlineMonitor


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
    from rlkd.core.config import resolve, to_dict

    module = agent_module(agent)
    yaml_file = str(config) if config else None
    cfg = resolve(module.CONFIG, module.PRESETS, preset, yaml_file, {**fields, "agent": agent})
    cfg = module.finalize(cfg)  # values derived from inputs, e.g. a dataset's env id
    path = run_training(module, cfg)
    scalars = load_run(path).scalars
    charts = {tag: c for tag, c in scalars.items() if tag.startswith("charts/") and len(c.values)}
    metrics = {tag: float(c.values[-1]) for tag, c in charts.items()}
    return TrainedRun(path, to_dict(cfg), metrics)


def run_training(module: AgentModule, cfg: Any, listeners: Sequence[Callable[..., None]] = ()) -> Path:
    """Create and lock the run folder, train, release; a start that fails leaves no folder.

    ``listeners`` are called with (step, scalars) after every log (see :attr:`rlkd.core.run.Run.listeners`).
    With ``cfg.nproc > 1`` this starts the ranks (:func:`rlkd.core.distributed.launch`) and returns when
    they end; in a rank, rank 0 makes the folder and the others learn its path.
    """
    import dataclasses

    from rlkd.core import distributed
    from rlkd.core.run import Run, keep_freed_memory

    size = distributed.world().size
    if size > 1 and cfg.nproc == 1:  # a plain torchrun launch: the run records its world size
        cfg = dataclasses.replace(cfg, nproc=size)
    if not distributed.launched():
        check_world(module, cfg)
        if cfg.nproc > 1:
            return launch_ranks(module, cfg)
    made: list[Run] = []

    def create() -> Path:
        check_world(module, cfg)
        made.append(Run.create(cfg, module.label(cfg)))
        return made[0].path

    path = distributed.share(create)  # rank 0 makes the folder; the others get its path or its error
    run = made[0] if made else None
    if run is not None:
        run.listeners.extend(listeners)
        run.on_start(f"run folder: {run.path}")
    keep_freed_memory()
    try:
        module.train(cfg, run, None)
    except BaseException:
        # A start that failed before writing anything (bad env id, wrong spaces) leaves no folder.
        if run is not None:
            run.discard_if_never_started()
        raise
    finally:
        if run is not None:
            run.release()
    if run is not None:
        print(f"done: {path} (TensorBoard: rlkd tb {path})", file=sys.stderr)
    return path


def check_world(module: AgentModule, cfg: Any) -> None:
    """Check ``cfg.nproc`` against the agent and, inside a distributed job, against its world size."""
    from rlkd.core import distributed
    from rlkd.errors import UserError

    if cfg.nproc > 1 and not module.DISTRIBUTED:
        raise UserError(f"--agent {cfg.agent} trains in one process; drop --nproc (and torchrun)")
    size = distributed.world().size
    if distributed.launched() and cfg.nproc != size:
        raise UserError(
            f"this run has nproc {cfg.nproc} but torchrun started {size} processes; "
            "start as many as the run has (rlkd resume starts them itself)"
        )


def launch_ranks(module: AgentModule, cfg: Any) -> Path:
    """Start ``cfg.nproc`` ranks of this run on this machine; the run folder is fixed here, so a
    failure can name it."""
    import dataclasses
    import tempfile

    from rlkd.core import distributed
    from rlkd.core.config import save_yaml
    from rlkd.core.run import run_name

    path = Path(cfg.run_dir) if cfg.run_dir else Path(cfg.runs_root) / run_name(cfg, module.label(cfg))
    with tempfile.TemporaryDirectory(prefix="rlkd-") as tmp:
        config = Path(tmp) / "config.yaml"
        save_yaml(dataclasses.replace(cfg, run_dir=str(path)), config)
        what = f"rlkd resume {path} continues from its last checkpoint"
        distributed.launch(cfg.nproc, ["train", "--agent", cfg.agent, "--config", str(config)], what)
    return path


class LoadedPolicy:
    """A run's trained policy, acting on one observation or a batch (SB3's ``predict``).

    Stateful policies (Dreamer's latent) follow each env's episode: pass ``episode_start`` (bool per
    env) at the first step of new episodes, or call :meth:`reset`.
    """

    def __init__(self, policy: Policy, obs_shape: tuple[int, ...], run: Any = None, step: int = 0) -> None:
        self.policy, self.obs_shape, self.run, self.step = policy, obs_shape, run, step
        self._first: np.ndarray | None = None

    def monitor(self) -> OnlineMonitor:
        """The run's calibrated failure monitor (``rlkd monitor calibrate``) as a per-step scorer:
        ``actions, step = scorer.predict(obs, episode_start)``, ``step.alarm`` per env.

        Raises:
            rlkd.errors.UserError: The run has no monitor, or one calibrated for another policy.
        """
        from rlkd.monitor.online import OnlineMonitor
        from rlkd.monitor.workflow import load_monitor

        mon, step = load_monitor(self.run)
        if step != self.step:
            from rlkd.errors import UserError

            raise UserError(f"the monitor was calibrated on checkpoint step {step}; load that one: "
                            f"rlkd.load(run, checkpoint={step})")  # fmt: skip
        return OnlineMonitor(self.policy, mon)

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
    from rlkd.analysis.evaluate import load_run_policy

    run, data, _, policy = load_run_policy(Path(run_dir), checkpoint, device)
    return LoadedPolicy(policy, tuple(policy.obs_shape), run, int(data["step"]))
