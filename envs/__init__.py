"""rlkd's vector-env layer: one Gymnasium 1.x ``VectorEnv`` API over every backend.

``make_vec(env_id, num_envs, seed)`` returns a ``gymnasium.vector.VectorEnv`` with

* batched ``observation_space``/``action_space`` and ``single_observation_space``/``single_action_space``;
* SAME_STEP autoreset (declared in ``metadata["autoreset_mode"]``): when an episode ends, ``step``
  already returns the first observation of the next one, and the last observation is in
  ``info["final_obs"]`` (indexed by env, valid where ``info["_final_obs"]``) so truncated episodes
  can be bootstrapped;
* ``info["episode"] = {"r": returns, "l": lengths}`` with mask ``info["_episode"]`` on episode ends.

Backends: envpool (C++), a native ``vector_entry_point`` (our AGV warehouse), and Gymnasium's
``SyncVectorEnv`` for any other registered id, including ``module:Env-v0`` ids and user env specs
(YAML files, see :mod:`rlkd.envs.specs`). Importing this package registers rlkd's own envs.
"""

from __future__ import annotations

import difflib
import importlib
import os
import sys
import warnings
from functools import cache
from typing import Any

import gymnasium as gym
from gymnasium.vector import AutoresetMode, VectorEnv
from rlkd.envs.envpool_adapter import EnvpoolVectorEnv, envpool_ids, is_envpool_task
from rlkd.envs.specs import register_spec_file, register_spec_folder
from rlkd.envs.wrappers import EpisodeStatistics, ResizeFrames

from rlkd.core.config import BACKENDS
from rlkd.errors import UserError

__all__ = [
    "BACKENDS", "EnvpoolVectorEnv", "EpisodeStatistics", "make_vec", "registered_id", "resolve_backend",
]  # fmt: skip


@cache
def _register_rlkd_envs() -> None:
    # Imported here, not at module top, so that a broken optional scene fails loudly only when used.
    from rlkd.envs.agv import register_agv_envs
    from rlkd.envs.chain import register_chain_envs
    from rlkd.envs.dmc import register_dmc_envs
    from rlkd.envs.reach import register_reach_envs

    register_agv_envs()
    register_chain_envs()
    register_dmc_envs()
    register_reach_envs()
    register_spec_folder()


def gymnasium_ids() -> list[str]:
    """Every id in Gymnasium's registry (after rlkd registered its own)."""
    _register_rlkd_envs()
    return sorted(gym.registry)


def resolve_backend(env_id: str, backend: str = "auto") -> str:
    """Decide which backend serves ``env_id``.

    ``auto`` prefers envpool for ids it knows (it is several times faster than Python envs),
    then Gymnasium's registry (which includes rlkd's envs and ``module:Env-v0`` ids).

    Raises:
        UserError: unknown backend or id; the message lists the closest known ids.
    """
    if backend not in BACKENDS:
        raise UserError(f"unknown env backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    in_gym = env_id in gymnasium_ids()
    # Importing envpool costs 0.2-1 s: skip it when the answer cannot be envpool.
    in_envpool = backend != "gymnasium" and not env_id.startswith("rlkd/") and is_envpool_task(env_id)
    if backend == "envpool" and not in_envpool:
        raise UserError(f"envpool has no task {env_id!r}{_suggest(env_id, envpool_ids())}")
    if backend == "gymnasium" and not in_gym:
        raise UserError(f"Gymnasium has no env {env_id!r}{_suggest(env_id, gymnasium_ids())}")
    if backend != "auto":
        return backend
    if in_envpool:
        return "envpool"
    if in_gym:
        return "gymnasium"
    raise UserError(
        f"unknown env id {env_id!r}{_suggest(env_id, sorted(set(envpool_ids() + gymnasium_ids())))} "
        "(`rlkd envs list` shows every id; register your own with a YAML spec, see README)"
    )


def _suggest(name: str, known: list[str]) -> str:
    close = difflib.get_close_matches(name, known, n=5, cutoff=0.5)
    return f"; did you mean {', '.join(close)}?" if close else ""


def registered_id(env_id: str) -> str:
    """The registry id of any id ``rlkd train`` takes: a YAML spec file is registered, a
    ``module:Env-v0`` id imports its module (which registers the env). Modules are found in the
    current folder too, as ``python -m`` finds them (the ``rlkd`` script alone would not)."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.append(os.getcwd())  # after installed packages: a local file never shadows them
    if env_id.endswith((".yaml", ".yml")):
        return register_spec_file(env_id)
    if ":" in env_id:
        # Gymnasium's module:Env-v0 convention: importing the module registers the env.
        module, env_id = env_id.split(":", 1)
        try:
            importlib.import_module(module)
        except ImportError as exc:
            raise UserError(f"cannot import {module!r} to register its envs: {exc}") from None
    return env_id


def make_vec(
    env_id: str, num_envs: int, seed: int, backend: str = "auto", image_size: int | None = None,
    **env_kwargs: Any,
) -> VectorEnv:  # fmt: skip
    """Make ``num_envs`` copies of ``env_id`` as one SAME_STEP-autoreset ``VectorEnv``.

    Args:
        env_id: envpool task id, Gymnasium id (``module:Env-v0`` too), ``rlkd/...`` id, or the
            path of a YAML env spec file.
        num_envs: Number of parallel environments (>= 1).
        seed: Seed for backends seeded at construction (envpool: environment ``i`` gets
            ``seed + i``); Gymnasium envs are seeded by ``reset(seed=...)`` the same way.
        backend: ``auto``, ``envpool`` or ``gymnasium``.
        image_size: Resize square RGB frames to this side (:class:`ResizeFrames`); None: as rendered.
        **env_kwargs: Passed to the environment constructor.

    Returns:
        The vector env, already wrapped with :class:`EpisodeStatistics`. Call ``reset(seed=seed)``
        before stepping.
    """
    if num_envs < 1:
        raise UserError(f"num_envs must be at least 1, got {num_envs}")
    env_id = registered_id(env_id)
    backend = resolve_backend(env_id, backend)
    if backend == "envpool":
        envs = EnvpoolVectorEnv(env_id, num_envs, seed, **env_kwargs)
    else:
        envs = _make_gymnasium(env_id, num_envs, env_kwargs)
    if image_size is not None:
        try:
            envs = ResizeFrames(envs, image_size, env_id)
        except UserError:
            envs.close()
            raise
    return EpisodeStatistics(envs)


def _make_gymnasium(env_id: str, num_envs: int, env_kwargs: dict[str, Any]) -> VectorEnv:
    """A Gymnasium-registered env as a SAME_STEP vector env (its native vector env when it has one)."""
    try:
        spec = gym.spec(env_id)
    except gym.error.Error as exc:
        raise UserError(f"cannot load env {env_id!r}: {exc}") from None
    try:
        envs = None
        if spec.vector_entry_point is not None:
            envs = gym.make_vec(env_id, num_envs, vectorization_mode="vector_entry_point", **env_kwargs)
            if envs.metadata.get("autoreset_mode") != AutoresetMode.SAME_STEP:
                # e.g. Gymnasium's CartPoleVectorEnv resets on the next step; step copies instead.
                warnings.warn(
                    f"{env_id}'s native vector env ({spec.vector_entry_point}) does not declare same-step "
                    "autoreset, which rlkd needs; stepping copies of the single env instead (slower)",
                    stacklevel=3,
                )
                envs.close()
                envs = None
        if envs is None:
            envs = gym.make_vec(
                env_id,
                num_envs,
                vectorization_mode="sync",
                vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
                **env_kwargs,
            )
    except TypeError as exc:
        raise UserError(f"bad env_kwargs for {env_id!r}: {exc}") from None
    except (ImportError, gym.error.Error) as exc:
        raise UserError(f"cannot make {env_id!r}: {exc}") from None
    return envs


# rlkd registers its own envs when rlkd.envs is imported (docs/design.md).
_register_rlkd_envs()
