"""Continuous AGV warehouse navigation (after Yin et al. 2024, arXiv 2404.12594).

Import as ``rlkd.envs.agv``. ``register_agv_envs()`` registers the ``rlkd/AGVWarehouse-*`` ids
(see docs/agv.md) for both ``gymnasium.make`` and ``gymnasium.make_vec``.
"""

from __future__ import annotations

import gymnasium

from .colors import COLOR_SETS
from .core import AGVSim, unicycle_step
from .maps import AGV_RADIUS, GOAL_RADIUS, SCENARIOS, WarehouseMap, get_scenario
from .single import AGVWarehouseEnv
from .vector import AGVWarehouseVectorEnv

__all__ = [
    "AGV_RADIUS",
    "COLOR_SETS",
    "GOAL_RADIUS",
    "SCENARIOS",
    "AGVSim",
    "AGVWarehouseEnv",
    "AGVWarehouseVectorEnv",
    "WarehouseMap",
    "agv_env_ids",
    "get_scenario",
    "register_agv_envs",
    "unicycle_step",
]

_ENTRY = "rlkd.envs.agv.single:AGVWarehouseEnv"
_VECTOR_ENTRY = "rlkd.envs.agv.vector:AGVWarehouseVectorEnv"
_CAMEL = {
    "bay": "Bay",
    "dock": "Dock",
    "simple-static": "SimpleStatic",
    "simple-dynamic": "SimpleDynamic",
    "complex-static": "ComplexStatic",
    "complex-dynamic": "ComplexDynamic",
}


def agv_env_ids() -> dict[str, dict]:
    """Every AGV env id with its constructor kwargs (and, implicitly, its episode limit)."""
    ids: dict[str, dict] = {"rlkd/AGVWarehouse-v0": {"scenario": "simple-static"}}
    for scenario, camel in _CAMEL.items():
        ids[f"rlkd/AGVWarehouse-{camel}-v0"] = {"scenario": scenario}
        ids[f"rlkd/AGVWarehouse-{camel}-Pixels-v0"] = {
            "scenario": scenario,
            "obs_mode": "pixels",
            "distractors": True,
        }
    return ids


def register_agv_envs() -> None:
    """Register all ``rlkd/AGVWarehouse-*`` ids with Gymnasium; ids already registered are skipped.

    ``max_episode_steps`` is the scenario's limit: ``gymnasium.make`` wraps the single env in a
    ``TimeLimit`` at the same step at which the env truncates itself, and ``make_vec`` passes it
    to the vector env, which truncates internally (so nothing is limited twice).
    """
    for env_id, kwargs in agv_env_ids().items():
        if env_id in gymnasium.registry:
            continue
        gymnasium.register(
            id=env_id,
            entry_point=_ENTRY,
            vector_entry_point=_VECTOR_ENTRY,
            max_episode_steps=SCENARIOS[kwargs["scenario"]].max_episode_steps,
            kwargs=dict(kwargs),
        )
