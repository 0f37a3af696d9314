"""Users' own envs: module:Env-v0 ids and YAML specs from the current folder, native vector envs."""

from __future__ import annotations

import sys
import textwrap
import warnings

import pytest
from rlkd.envs import make_vec

from rlkd.cli import main

MODULE = '''
import gymnasium as gym
import numpy as np


class Flip(gym.Env):
    """Reward 1 for action 1; episodes of 8 steps."""

    observation_space = gym.spaces.Box(0.0, 1.0, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.zeros(2, np.float32), {}

    def step(self, action):
        return np.ones(2, np.float32), float(action), False, False, {}


if "{env_id}" not in gym.registry:
    gym.register("{env_id}", entry_point=Flip, max_episode_steps=8)
'''


@pytest.fixture
def local_folder(tmp_path, monkeypatch):
    """A folder holding the user's module, made the current folder; sys.path restored afterwards."""
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_module_id_from_the_current_folder_trains_and_shows(local_folder, capsys):
    (local_folder / "my_local_env.py").write_text(MODULE.replace("{env_id}", "LocalFlip-v0"))
    assert main(["envs", "show", "my_local_env:LocalFlip-v0"]) == 0
    out = capsys.readouterr().out
    assert "id:                LocalFlip-v0" in out and "Discrete(2)" in out
    assert main(["train", "--preset", "debug", "--env", "my_local_env:LocalFlip-v0", "--run-dir", "r"]) == 0
    assert (local_folder / "r" / "checkpoints").is_dir()


def test_yaml_spec_names_a_local_module_and_a_vector_entry_point(local_folder, capsys):
    (local_folder / "spec_env.py").write_text(MODULE.replace("{env_id}", "Unused-v0"))
    spec = local_folder / "flip.yaml"
    spec.write_text(textwrap.dedent("""\
        id: SpecFlip-v0
        entry_point: spec_env:Flip
        max_episode_steps: 8
    """))
    assert main(["envs", "show", str(spec)]) == 0
    assert "id:                SpecFlip-v0" in capsys.readouterr().out
    agv = local_folder / "agv.yaml"
    agv.write_text(textwrap.dedent("""\
        id: MyAGV-v0
        entry_point: rlkd.envs.agv.single:AGVWarehouseEnv
        vector_entry_point: rlkd.envs.agv.vector:AGVWarehouseVectorEnv
        kwargs: {scenario: bay}
    """))
    envs = make_vec(str(agv), 3, 0)
    assert type(envs.unwrapped).__name__ == "AGVWarehouseVectorEnv"  # the native one, not copies
    envs.close()


def test_a_skipped_native_vector_env_is_reported():
    # Gymnasium's CartPoleVectorEnv autoresets on the next step; rlkd needs same-step autoreset.
    with pytest.warns(UserWarning, match="does not declare same-step autoreset"):
        envs = make_vec("CartPole-v1", 2, 0, "gymnasium")
    assert type(envs.unwrapped).__name__ == "SyncVectorEnv"
    envs.close()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the AGV env's native vector env is used silently
        make_vec("rlkd/AGVWarehouse-v0", 2, 0).close()
