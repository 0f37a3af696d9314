"""Adapter that makes an envpool task a Gymnasium 1.x ``VectorEnv`` with SAME_STEP autoreset.

envpool's gymnasium API differs from Gymnasium's vector API in ways that matter for training:

* its ``observation_space``/``action_space`` are the *single*-env spaces;
* it resets a finished env on the *next* ``step`` call and ignores that step's action, so the
  terminal observation of a truncated episode is returned but the reset observation comes one
  call later. We instead reset finished envs immediately (``reset(env_id=...)``), return the
  first observation of the new episode and put the terminal one in ``info["final_obs"]``;
* dict observations (dm_control, MiniGrid) are flattened to one float32 vector;
* Atari with ``episodic_life`` ends RL episodes at each life lost; ``info["game_over"]`` and the
  unclipped ``info["raw_reward"]`` let episode statistics report whole games.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import os
import sys
import types
import warnings
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from rlkd.errors import UserError

TASKS_FILE = Path(__file__).with_name("envpool_tasks.json")  # scripts/envpool_tasks.py writes it


@cache
def _families() -> dict[str, str] | None:
    """Task id -> envpool family (``atari``, ``mujoco.dmc``, ...) when ``envpool_tasks.json`` was
    written for the installed envpool, else None."""
    table = json.loads(TASKS_FILE.read_text())
    try:
        installed = importlib.metadata.version("envpool")
    except importlib.metadata.PackageNotFoundError:
        return None
    return table["tasks"] if table["envpool"] == installed else None


def _envpool(task_id: str | None = None) -> Any:
    """envpool, with ``task_id``'s family registered (every family when None or not in the table).

    ``import envpool`` registers all 17 families (~1 s, a tenth of a short CartPole run; jumanji's
    alone ~0.3 s): with the table, only the family in use is imported.
    """
    families = _families()
    if families is not None and "envpool" not in sys.modules:
        sys.modules["envpool.entry"] = types.ModuleType("envpool.entry")  # what `import envpool` runs
    import envpool

    if families is not None:
        wanted = {families[task_id]} if task_id in families else set(families.values())
        for family in sorted(wanted):
            importlib.import_module(f"envpool.{family}.registration")
    return envpool


@cache
def _ids() -> tuple[str, ...]:
    return tuple(_envpool().list_all_envs())


def envpool_ids() -> list[str]:
    """All task ids envpool knows."""
    return list(_ids())


def is_envpool_task(task_id: str) -> bool:
    """Whether envpool has ``task_id``, without registering every family when the table knows."""
    families = _families()
    return task_id in families if families is not None else task_id in _ids()


def default_threads(num_envs: int) -> int:
    """envpool worker threads: one per core this process may run on, at most one per env.

    envpool's default (0) is one per core of the machine, which oversubscribes a process pinned to
    fewer cores (``taskset``, a cgroup, a ``torchrun`` rank per core).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(num_envs, cores))


def _flat_space(space: gym.spaces.Dict) -> gym.spaces.Box:
    size = 0
    for sub in space.spaces.values():
        if isinstance(sub, gym.spaces.Box):
            size += int(np.prod(sub.shape))
        elif isinstance(sub, gym.spaces.Discrete):
            size += int(sub.n)
        else:
            raise UserError(
                f"cannot flatten envpool observation part {sub}; use an env with Box observations"
            )
    return gym.spaces.Box(-np.inf, np.inf, (size,), np.float32)


def _flatten(space: gym.spaces.Dict, obs: dict[str, np.ndarray]) -> np.ndarray:
    parts = []
    for key, sub in space.spaces.items():
        value = np.asarray(obs[key])
        if isinstance(sub, gym.spaces.Discrete):
            parts.append(np.eye(sub.n, dtype=np.float32)[value.astype(np.int64) - sub.start])
        else:
            parts.append(value.reshape(value.shape[0], -1).astype(np.float32))
    return np.concatenate(parts, axis=1)


class EnvpoolVectorEnv(VectorEnv):
    """One envpool task as a SAME_STEP-autoreset Gymnasium ``VectorEnv``.

    Args:
        task_id: envpool task id, e.g. ``CartPole-v1``, ``MontezumaRevenge-v5``, ``CheetahRun-v1``.
        num_envs: Number of environments.
        seed: Seed; envpool seeds env ``i`` with ``seed + i``.
        **kwargs: envpool options (``episodic_life``, ``reward_clip``, ``stack_num``, ...).
    """

    metadata: ClassVar[dict[str, Any]] = {"autoreset_mode": AutoresetMode.SAME_STEP}

    def __init__(self, task_id: str, num_envs: int, seed: int, **kwargs: Any) -> None:
        self._task_id, self._kwargs, self._seed = task_id, kwargs, seed
        self.num_envs = num_envs
        self._env = self._make(seed)
        self._fresh = True  # the pool has not been stepped since it was seeded
        self.spec = None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # envpool's float64 Box bounds, see _make
            self._raw_space = self._env.observation_space
            act = self._env.action_space
        self._dict_obs = isinstance(self._raw_space, gym.spaces.Dict)
        single_obs = _flat_space(self._raw_space) if self._dict_obs else self._raw_space
        if isinstance(single_obs, gym.spaces.Box) and single_obs.dtype == np.float64:
            # envpool's MuJoCo tasks declare float64; networks run in float32 anyway.
            single_obs = gym.spaces.Box(-np.inf, np.inf, single_obs.shape, np.float32)
        self._act_dtype = act.dtype
        if isinstance(act, gym.spaces.Box):
            act = gym.spaces.Box(
                act.low.astype(np.float32), act.high.astype(np.float32), act.shape, np.float32
            )
        self.single_observation_space = single_obs
        self.single_action_space = act
        self.observation_space = batch_space(single_obs, num_envs)
        self.action_space = batch_space(act, num_envs)
        self._episodic_life = bool(getattr(self._env.spec.config, "episodic_life", False))
        self._obs_dtype = single_obs.dtype

    def _make(self, seed: int) -> Any:
        try:
            with warnings.catch_warnings():
                # envpool builds float64 Box bounds that Gymnasium warns about on every construction.
                warnings.simplefilter("ignore", UserWarning)
                kwargs = {"num_threads": default_threads(self.num_envs), **self._kwargs}
                return _envpool(self._task_id).make_gymnasium(
                    self._task_id, num_envs=self.num_envs, seed=seed, **kwargs
                )
        except (TypeError, ValueError, RuntimeError) as exc:
            raise UserError(f"envpool cannot make {self._task_id!r} with {self._kwargs}: {exc}") from None

    def _obs(self, obs: Any) -> np.ndarray:
        if self._dict_obs:
            return _flatten(self._raw_space, obs)
        return np.asarray(obs, dtype=self._obs_dtype)

    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        # envpool is seeded only at construction, so a new seed means a new pool.
        if isinstance(seed, list):
            seed = seed[0]
        if seed is not None and (seed != self._seed or not self._fresh):
            self._env.close()
            self._seed = seed
            self._env = self._make(seed)
        self._fresh = False
        obs, info = self._env.reset()
        return self._obs(obs), self._info(info, np.zeros(self.num_envs, bool))

    def step(self, actions: np.ndarray):
        actions = np.asarray(actions, dtype=self._act_dtype)
        obs, rewards, terminations, truncations, info = self._env.step(actions)
        obs = self._obs(obs)
        terminations = np.asarray(terminations, dtype=bool)
        truncations = np.asarray(truncations, dtype=bool)
        done = terminations | truncations
        out = self._info(info, truncations)
        if done.any():
            ids = np.flatnonzero(done)
            out["final_obs"] = obs.copy()
            out["_final_obs"] = done
            reset_obs, _ = self._env.reset(ids.astype(np.int32))
            obs[ids] = self._obs(reset_obs)
        return obs, np.asarray(rewards, dtype=np.float32), terminations, truncations, out

    def _info(self, info: dict[str, Any], truncations: np.ndarray) -> dict[str, Any]:
        out: dict[str, Any] = {
            k: v
            for k, v in info.items()
            if isinstance(v, np.ndarray)
            and v.shape[:1] == (self.num_envs,)
            and k not in ("players", "reward")
        }
        if "reward" in info:  # Atari: the unclipped game reward
            out["raw_reward"] = np.asarray(info["reward"], dtype=np.float64)
        if self._episodic_life and "terminated" in info:
            # A life lost ends the RL episode; the game ends when envpool's info says it terminated
            # for real, or when the time limit truncates it.
            out["game_over"] = np.asarray(info["terminated"], dtype=bool) | truncations
        return out

    def close(self, **kwargs: Any) -> None:
        self._env.close()
