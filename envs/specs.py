"""User environment specs: register your own Gymnasium env from a small YAML file.

A spec file names an id, a Python entry point, constructor kwargs and the episode limit::

    id: MyCorridor-v0                      # any Gymnasium-style id (namespaces allowed: me/Env-v0)
    entry_point: my_pkg.my_env:MyEnv       # module path : class or factory
    kwargs: {length: 10}                   # optional
    max_episode_steps: 200                 # optional: truncation limit (TimeLimit)
    vector_entry_point: my_pkg.my_env:MyVectorEnv   # optional: a native vector env (same-step autoreset)

A file may also hold ``envs: [spec, spec, ...]``. rlkd registers, on import of ``rlkd.envs``,
every ``*.yaml`` in the ``envs/spec_files/`` folder of the package and in every file or folder listed
in the ``RLKD_ENV_SPECS`` environment variable (``os.pathsep``-separated); ``rlkd train --env
path/to/spec.yaml`` registers one file and trains on the env it names.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gymnasium as gym

from rlkd.core.config import read_yaml
from rlkd.errors import UserError

SPEC_DIR = Path(__file__).parent / "spec_files"
_KEYS = {"id", "entry_point", "kwargs", "max_episode_steps", "vector_entry_point"}


def _register(spec: Any, source: Path) -> str:
    if not isinstance(spec, dict) or "id" not in spec or "entry_point" not in spec:
        raise UserError(f"env spec in {source} needs at least `id:` and `entry_point:` (module.path:Class)")
    unknown = set(spec) - _KEYS
    if unknown:
        raise UserError(
            f"env spec {spec['id']!r} in {source} has unknown keys {sorted(unknown)}; "
            f"allowed: {sorted(_KEYS)}"
        )
    entry = str(spec["entry_point"])
    vector_entry = spec.get("vector_entry_point")
    for key, value in (("entry_point", entry), ("vector_entry_point", vector_entry)):
        if value is not None and ":" not in str(value):
            raise UserError(f"{key} {value!r} in {source} must look like module.path:ClassName")
    kwargs = spec.get("kwargs") or {}
    if not isinstance(kwargs, dict):
        raise UserError(f"`kwargs:` of {spec['id']!r} in {source} must be a mapping")
    limit = spec.get("max_episode_steps")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise UserError(f"max_episode_steps of {spec['id']!r} in {source} must be a positive integer")
    env_id = str(spec["id"])
    if env_id in gym.registry:
        existing = gym.registry[env_id]
        if (
            existing.entry_point == entry
            and existing.kwargs == kwargs
            and existing.max_episode_steps == limit
            and existing.vector_entry_point == vector_entry
        ):
            return env_id
        raise UserError(f"env id {env_id!r} from {source} is already registered with a different entry point")
    gym.register(
        id=env_id, entry_point=entry, vector_entry_point=vector_entry, kwargs=kwargs, max_episode_steps=limit
    )
    return env_id


def register_spec_file(path: str | Path) -> str:
    """Register every spec in one YAML file; return the id of the first one."""
    path = Path(path)
    data = read_yaml(path)
    specs = data.get("envs", [data])
    if not isinstance(specs, list) or not specs:
        raise UserError(f"{path}: `envs:` must be a non-empty list of specs")
    ids = [_register(spec, path) for spec in specs]
    return ids[0]


def register_spec_folder() -> None:
    """Register the specs shipped in ``envs/spec_files/`` and those named by ``RLKD_ENV_SPECS``."""
    named = [Path(p) for p in os.environ.get("RLKD_ENV_SPECS", "").split(os.pathsep) if p]
    for place in [SPEC_DIR, *named]:
        if not place.exists():
            if place == SPEC_DIR:
                continue
            raise UserError(f"RLKD_ENV_SPECS names {place}, which does not exist")
        files = sorted(place.glob("*.y*ml")) if place.is_dir() else [place]
        for file in files:
            register_spec_file(file)
