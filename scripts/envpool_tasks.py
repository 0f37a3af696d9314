"""Write ``envs/envpool_tasks.json``: every envpool task id and the family that registers it.

    python scripts/envpool_tasks.py        # after installing another envpool version

``import envpool`` registers all of envpool's families (Atari, MuJoCo, jumanji, ...), which costs
~1 s; with this table rlkd registers only the family of the task it makes
(``envs/envpool_adapter.py``). The table is used only when its ``envpool`` version is the
installed one; ``tests/test_envs.py`` checks it against a fresh registration.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import sys
import types
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "envs" / "envpool_tasks.json"


def families() -> list[str]:
    """The family modules envpool's ``entry`` imports, in its order (e.g. ``mujoco.dmc``)."""
    source = Path(importlib.util.find_spec("envpool").submodule_search_locations[0], "entry.py")
    names = [a.name for node in ast.walk(ast.parse(source.read_text())) if isinstance(node, ast.Import)
             for a in node.names]  # fmt: skip
    return [n.removeprefix("envpool.").removesuffix(".registration") for n in names]


def task_table() -> dict[str, object]:
    """{"envpool": version, "tasks": {task id: family}}; run in a process that has not imported envpool."""
    sys.modules.setdefault("envpool.entry", types.ModuleType("envpool.entry"))
    import envpool

    tasks: dict[str, str] = {}
    for family in families():
        importlib.import_module(f"envpool.{family}.registration")
        tasks |= {task: family for task in envpool.list_all_envs() if task not in tasks}
    return {"envpool": envpool.__version__, "tasks": tasks}


if __name__ == "__main__":
    OUT.write_text(json.dumps(task_table(), indent=0, sort_keys=True) + "\n")
    print(f"wrote {OUT}")
