"""docs/design.md's layering, checked over the real import graph (every ``import`` in the tree,
function-level ones included, read with :mod:`ast`)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCES = {"rlkd": ROOT / "rlkd", "rlkd.envs": ROOT / "envs", "rlkd.agents": ROOT / "agents"}
"""Import name of each source folder (``envs/`` and ``agents/`` install as rlkd.envs, rlkd.agents)."""

PACKAGES = (
    "rlkd.errors", "rlkd.core", "rlkd.envs", "rlkd.nn", "rlkd.intrinsic", "rlkd.world_model",
    "rlkd.agents", "rlkd.analysis", "rlkd.monitor", "rlkd.api", "rlkd.cli", "rlkd",
)  # fmt: skip
"""The units of the layering: rlkd's sub-packages, its two top modules and the package itself."""

ALLOWED = {
    "rlkd.errors": set(),
    # The one two-way pair: the loop reads envs' final observations and rebuilds a run's env for
    # videos and evaluation; envs read spec files and write GIFs with core's YAML and media helpers.
    "rlkd.core": {"rlkd.errors", "rlkd.envs"},
    "rlkd.envs": {"rlkd.errors", "rlkd.core"},
    "rlkd.nn": {"rlkd.core"},
    "rlkd.intrinsic": {"rlkd.errors", "rlkd.core", "rlkd.nn"},
    # analysis: `rlkd collect --policy RUN_DIR` loads a run's policy (rlkd.analysis.evaluate).
    "rlkd.world_model": {"rlkd.errors", "rlkd.core", "rlkd.nn", "rlkd.envs", "rlkd.analysis"},
    "rlkd.agents": {"rlkd.errors", "rlkd.core", "rlkd.nn", "rlkd.intrinsic", "rlkd.world_model", "rlkd.envs"},
    "rlkd.analysis": {"rlkd.errors", "rlkd.core", "rlkd.envs", "rlkd.agents"},
    "rlkd.monitor": {"rlkd.errors", "rlkd.core", "rlkd.nn", "rlkd.intrinsic", "rlkd.agents", "rlkd.analysis"},
    "rlkd.api": {"rlkd.errors", "rlkd.core", "rlkd.agents", "rlkd.analysis", "rlkd.monitor"},
    "rlkd.cli": {
        "rlkd.errors",
        "rlkd.core",
        "rlkd.envs",
        "rlkd.world_model",
        "rlkd.agents",
        "rlkd.analysis",
        "rlkd.monitor",
        "rlkd.api",
    },
    "rlkd": {"rlkd.api"},  # rlkd.train and rlkd.load, imported on first use
}
"""Which packages each package may import (docs/design.md, "Where things are")."""


def module_name(path: Path) -> str:
    """The import name of a source file, e.g. ``envs/agv/render.py`` -> ``rlkd.envs.agv.render``."""
    for name, folder in SOURCES.items():
        if path.is_relative_to(folder):
            parts = list(path.relative_to(folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            return ".".join([name, *parts])
    raise ValueError(path)


def imports(path: Path, module: str, known: set[str]) -> set[str]:
    """Every rlkd module ``path`` imports, at any depth of the file: ``from a import b`` counts as
    ``a.b`` where that is one of the ``known`` modules, else as ``a``; relative imports resolved."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            submodules = {f"{base}.{alias.name}" for alias in node.names} & known
            found |= submodules or {base}
    return {m for m in found if m == "rlkd" or m.startswith("rlkd.")}


def graph() -> dict[str, set[str]]:
    """Module -> the rlkd modules it imports (only names that are modules of the tree)."""
    files = {module_name(p): p for folder in SOURCES.values() for p in folder.rglob("*.py")}
    known = set(files)
    return {m: {i for i in imports(p, m, known) if i in known and i != m} for m, p in files.items()}


def package_of(module: str) -> str:
    """The layering unit of a module: ``rlkd.core.loop`` -> ``rlkd.core``."""
    parts = module.split(".")
    return module if len(parts) == 1 else ".".join(parts[:2])


def test_the_tree_maps_onto_the_layering_table():
    modules = graph()
    assert {package_of(m) for m in modules} == set(PACKAGES) == set(ALLOWED)
    assert "rlkd.envs.agv.render" in modules and "rlkd.agents.ppo" in modules and "rlkd.cli" in modules
    # The parser sees function-level imports (rlkd.cli imports rlkd.api only inside functions).
    assert "rlkd.api" in modules["rlkd.cli"]


def test_packages_import_only_what_the_layering_allows():
    offending = sorted(
        f"{module} imports {target}"
        for module, targets in graph().items()
        for target in targets
        if package_of(target) != package_of(module) and package_of(target) not in ALLOWED[package_of(module)]
    )
    assert offending == []


def test_the_layering_has_one_two_way_pair():
    """Above core and envs, packages import one way: agents and analysis no longer import each other
    (the training-video recorder lives in rlkd.core.media, under both)."""
    two_way = {frozenset((a, b)) for a, targets in ALLOWED.items() for b in targets if a in ALLOWED[b]}
    assert two_way == {frozenset(("rlkd.core", "rlkd.envs"))}
    edges = {(package_of(m), package_of(t)) for m, targets in graph().items() for t in targets}
    assert ("rlkd.agents", "rlkd.analysis") not in edges and ("rlkd.analysis", "rlkd.agents") in edges


def test_no_module_imports_one_that_imports_it_back():
    modules = graph()
    pairs = sorted((a, b) for a, targets in modules.items() for b in targets if a < b and a in modules[b])
    assert pairs == []
