"""The one online training loop: everything an agent needs that is not its algorithm.

An agent (PPO in ``agents/ppo.py``, Dreamer/DisWM in ``agents/dreamer.py``) is an
:class:`Algorithm`. It learns in iterations, each of which steps the envs through :class:`Envs`:
PPO's iteration is CleanRL's loop body, written out in ``agents/ppo.py`` (a rollout of ``num_steps``
vector steps, then the update); Dreamer's is one vector step (``act``, ``observe``, ``update`` when
one is due; :func:`one_step`). :func:`train` owns the rest, once: resetting the environments and,
at every vector step, the step count, the non-finite checks on env data, episode statistics and env
callbacks (DisWM's colour switch, training videos); the guard of optimizer steps, log and
checkpoint cadence, the progress display, resume (RNG states, the non-finite guard's count) and
closing everything.

Shapes: every array of a :class:`Transition` has the number of environments ``N`` first.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, Protocol

import numpy as np
from torch import Tensor

from rlkd.core import distributed
from rlkd.core.config import TrainConfig
from rlkd.core.guard import UpdateGuard, check_finite
from rlkd.core.run import Progress, Run, rng_state, set_rng_state
from rlkd.envs.wrappers import final_observations

Scalar = float | Tensor


@dataclasses.dataclass
class Transition:
    """One vector step, as the algorithm is shown it (Gymnasium's same-step autoreset: where an
    episode ended, ``next_obs`` is the next episode's first observation and ``info`` holds the
    final one)."""

    obs: np.ndarray  # (N, *obs_shape)
    action: np.ndarray  # (N, *action_shape), as given to the env
    reward: np.ndarray  # (N,)
    terminated: np.ndarray  # (N,) bool
    truncated: np.ndarray  # (N,) bool
    info: dict[str, Any]
    next_obs: np.ndarray  # (N, *obs_shape)


class Envs:
    """The vector env as an agent steps it: :meth:`step` is ``envs.step`` plus what the loop does at
    every vector step (counting env steps, non-finite checks, episode statistics, env callbacks).

    Attributes:
        obs: ``(N, *obs_shape)`` the current observation.
        steps: Env steps of the whole job so far (every rank's envs).
    """

    def __init__(
        self, cfg: TrainConfig, envs: Any, obs: np.ndarray, steps: int, callbacks: Sequence[Callback],
        run: Run | None, guard: UpdateGuard,
    ) -> None:  # fmt: skip
        self.cfg, self.envs, self.obs, self.steps = cfg, envs, obs, steps
        self.callbacks, self.run, self.guard = callbacks, run, guard
        self.episodes = EpisodeStats()
        self.job_envs = envs.num_envs * distributed.world().size

    def step(self, action: np.ndarray, observe: Callable[[Transition], None] | None = None) -> Transition:
        """One vector step with env actions ``(N, ...)``; ``observe`` (if given) sees the transition
        before the env callbacks run."""
        next_obs, reward, term, trunc, info = self.envs.step(action)
        self.steps += self.job_envs
        where = f"env {self.cfg.env_id}"
        check_finite(where, self.steps, observation=next_obs, reward=reward)
        if "_final_obs" in info:  # the last observation of ended episodes (bootstraps, replay)
            check_finite(where, self.steps, final_observation=final_observations(info, next_obs))
        self.episodes.record(info)
        transition = Transition(self.obs, action, reward, term, trunc, info, next_obs)
        if observe is not None:
            observe(transition)
        self.obs = next_obs
        for cb in self.callbacks:
            cb.on_step(self.steps, self.envs, self.run)
        self.guard.step = self.steps  # where a non-finite update would be reported
        return transition


class Algorithm(Protocol):
    """What an agent gives the loop: an ``iterate`` (PPO), or ``act``, ``observe``, ``update`` and
    ``at_boundary`` (Dreamer, one vector step per iteration: :func:`one_step`); and the rest below."""

    def iterate(self, envs: Envs, guard: UpdateGuard) -> Mapping[str, Scalar]:
        """One iteration: step ``envs``, learn; returns scalars to log under their tags. Every
        optimizer step goes through ``guard.ok``. Logging, checkpoints and stopping happen between
        iterations."""

    label: str
    """Shown in the progress display."""

    def start(
        self, envs: Any, obs: np.ndarray, step: int, resumed: bool, note: Callable[[str], None]
    ) -> np.ndarray:
        """Called once after the reset, at env step ``step``: warm-ups that step the envs (RND's
        observation statistics), first observations into a replay; ``note`` announces each warm-up.
        Returns the current observation."""

    def act(self, obs: np.ndarray, step: int) -> np.ndarray:
        """Env actions (N, ...) for observations (N, ...) at env step ``step``."""

    def observe(self, transition: Transition, step: int) -> None:
        """Store one vector step; ``step`` counts env steps including this one."""

    def update(self, step: int, guard: UpdateGuard) -> Mapping[str, Scalar]:
        """Learn if an update is due; returns scalars to log under their tags (empty if none ran).
        Every optimizer step goes through ``guard.ok``."""

    def at_boundary(self) -> bool:
        """Whether logging, checkpointing and stopping may happen now (agents without ``iterate``)."""

    def status(self) -> Mapping[str, Scalar]:
        """Scalars describing the current state (learning rate, eta), logged at every log."""

    def media(self, step: int) -> Mapping[str, Tensor]:
        """Image batches (N, C, H, W) in [0, 1] to log now under their tags; empty if none."""

    def policy(self) -> Any:
        """An acting object with the current weights (``act(obs, first, deterministic)``), for videos."""

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue exactly, as checkpoint data (flat keys)."""

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what :meth:`state_dict` saved."""


class Callback(Protocol):
    """Something done to the envs as training goes (e.g. switching colour distractors)."""

    def on_start(self, envs: Any) -> None:
        """Called before the first reset (after a resume restored the callback's state)."""

    def on_step(self, step: int, envs: Any, run: Run) -> None:
        """Called after every vector step."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...


class EpisodeStats:
    """Return, length and (if the env reports it) success of the episodes that ended since the
    last :meth:`pop`, read from the episode-statistics wrapper's ``info["episode"]``."""

    TAGS: ClassVar[dict[str, str]] = {
        "r": "charts/episodic_return", "l": "charts/episodic_length", "success": "charts/success_rate"
    }  # fmt: skip

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {k: [] for k in self.TAGS}

    def record(self, info: Mapping[str, Any]) -> None:
        if "episode" not in info:
            return
        ended = np.flatnonzero(info["_episode"])
        for key, values in self.values.items():
            if key in info["episode"]:
                values.extend(np.asarray(info["episode"][key])[ended].astype(float).tolist())

    def pop(self) -> dict[str, float]:
        """Means under their ``charts/`` tags, over every rank's episodes; clears the episodes."""
        ranks = distributed.gather(self.values)
        out = {}
        for key, tag in self.TAGS.items():
            values = [v for rank in ranks for v in rank[key]]
            if values:
                out[tag] = float(np.mean(values))
        for v in self.values.values():
            v.clear()
        return out


class Scalars:
    """Means of update scalars over a log interval (tensors summed: no device sync per update)."""

    def __init__(self) -> None:
        self.sums: dict[str, Scalar] = {}
        self.counts: dict[str, int] = {}

    def add(self, values: Mapping[str, Scalar]) -> None:
        for k, v in values.items():
            if isinstance(v, Tensor):
                if v.dim() != 0:
                    continue
                v = v.detach()
            self.sums[k] = self.sums[k] + v if k in self.sums else v
            self.counts[k] = self.counts.get(k, 0) + 1

    def pop(self) -> dict[str, float]:
        out = {k: float(v) / self.counts[k] for k, v in self.sums.items()}
        self.sums, self.counts = {}, {}
        return out


def train(
    cfg: TrainConfig,
    run: Run | None,
    checkpoint: Mapping[str, Any] | None,
    envs: Any,
    algo: Algorithm,
    callbacks: Sequence[Callback] = (),
) -> None:
    """Train ``algo`` on ``envs`` until ``cfg.total_steps`` env steps (and a boundary) are reached.

    Args:
        cfg: The run's config (seed, total steps, cadences, ``on_nonfinite``).
        run: The run folder (locked by the caller); announced once start-up succeeded. None on the
            ranks of a distributed job other than rank 0, which alone writes.
        checkpoint: A payload of ``run.load_checkpoint()`` to resume from, or None.
        envs: The vector env (closed at the end, also on errors).
        algo: The agent.
        callbacks: Env callbacks, in order.
    """
    try:
        _train(cfg, run, checkpoint, envs, algo, callbacks)
    finally:
        envs.close()
        if run is not None:
            run.close()


def _train(
    cfg: TrainConfig, run: Run | None, checkpoint: Mapping[str, Any] | None, envs: Any, algo: Algorithm,
    callbacks: Sequence[Callback],
) -> None:  # fmt: skip
    step = int(checkpoint["step"]) if checkpoint else 0
    world = distributed.world()
    guard = UpdateGuard(cfg.on_nonfinite)
    if checkpoint:
        state = checkpoint["state"]
        algo.load_state_dict(state)
        for cb in callbacks:
            cb.load_state_dict(state)
        guard.load_state_dict(state.get("guard", {}))
        set_rng_state(state["rng_ranks"][world.rank] if "rng_ranks" in state else state["rng"])
    for cb in callbacks:
        cb.on_start(envs)
    # A resumed run starts fresh episodes, seeded by where it stopped, so it never replays the same
    # ones; rank r's envs take the seeds that envs r*N..(r+1)*N-1 of one process would.
    seed = env_seed(cfg, step)
    obs, _ = envs.reset(seed=seed)
    envs.action_space.seed(seed)
    check_finite(f"env {cfg.env_id}", step, observation=obs)
    progress = Progress(cfg.total_steps, step, algo.label, enabled=world.main)
    obs = algo.start(envs, obs, step, checkpoint is not None, progress.note)
    if run is not None:
        run.start()  # after the warm-ups: a start that fails in them leaves no folder

    env = Envs(cfg, envs, obs, step, callbacks, run, guard)
    iterate = algo.iterate if hasattr(algo, "iterate") else functools.partial(one_step, algo)
    at_boundary = getattr(algo, "at_boundary", lambda: True)  # iterations end at boundaries
    scalars = Scalars()
    last_log, last_ckpt = step, step
    t0, s0 = time.time(), step
    while env.steps < cfg.total_steps or not at_boundary():
        scalars.add(iterate(env, guard))
        step = env.steps
        for tag, images in algo.media(step).items():
            if run is not None:
                run.writer.add_images(tag, images, step)
        if not at_boundary():
            continue
        done = step >= cfg.total_steps
        if step - last_log >= cfg.log_interval or done:
            last_log = step
            sps = (step - s0) / max(time.time() - t0, 1e-9)
            logged = {"charts/SPS": sps, **algo.status(), **env.episodes.pop(), **scalars.pop()}
            if guard.mode == "skip":
                logged["charts/skipped_updates"] = guard.skipped
            if run is not None:
                run.log_scalars(step, logged)
            ret, success = logged.get("charts/episodic_return"), logged.get("charts/success_rate")
            progress.update(step, SPS=sps, ret=ret, success=success)
        # Checkpoints at the first boundary past each multiple of checkpoint_interval, and at the end.
        if step // cfg.checkpoint_interval > last_ckpt // cfg.checkpoint_interval or done:
            last_ckpt = step
            rngs = distributed.gather(rng_state())  # every rank's, so each continues its own streams
            state = {**algo.state_dict(), "rng": rngs[0], "guard": guard.state_dict()}
            if world.size > 1:
                state["rng_ranks"] = rngs
            for cb in callbacks:
                state |= cb.state_dict()
            if run is not None:
                run.save_checkpoint(step, state, keep=cfg.keep_checkpoints)
    progress.close()


def one_step(algo: Any, envs: Envs, guard: UpdateGuard) -> Mapping[str, Scalar]:
    """The iteration of an agent without ``iterate`` (Dreamer): act, one vector step that the agent
    observes, then an update if one is due."""
    action = algo.act(envs.obs, envs.steps)
    envs.step(action, observe=lambda transition: algo.observe(transition, envs.steps))
    return algo.update(envs.steps, guard)


def env_seed(cfg: TrainConfig, step: int) -> int:
    """Seed of this rank's envs at env step ``step``: rank r's N envs get the seeds of envs
    r*N..(r+1)*N-1 of one process with all the job's envs."""
    return cfg.seed + step + distributed.world().rank * cfg.num_envs
