"""The distribution ships every subpackage under its rlkd name (the layout of docs/design.md)."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_package_folder_is_listed_under_the_rlkd_namespace():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    found = set()
    for name, folder in config["package-dir"].items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([name, *rel.parts]))
    # Sub-packages of mapped folders (e.g. rlkd.envs.agv) must be listed, or a wheel drops them.
    assert found <= listed, f"not shipped: {sorted(found - listed)}"
    assert not any(name.split(".")[0] in ("envs", "agents") for name in listed)


def test_agent_presets_ship_with_the_package():
    """The presets are YAML files beside the agents: the wheel must carry them (package-data)."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    patterns = config["package-data"]["rlkd.agents"]
    files = {p.relative_to(ROOT / "agents") for pattern in patterns for p in (ROOT / "agents").glob(pattern)}
    assert {Path("presets") / f"{name}.yaml" for name in ("ppo", "dreamer", "pretrain")} <= files


def test_training_does_not_load_the_report_statistics():
    """Agents import ``rlkd.core.media`` (the video recorder); it must not pull scipy.stats in."""
    code = (
        "import sys, rlkd.agents.ppo, rlkd.agents.dreamer, rlkd.cli\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'scipy'))\n"
        "from rlkd.analysis import bootstrap_band, report\n"
        "print(report.__module__, 'scipy.stats' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["[]", "rlkd.analysis.reporting True"]
