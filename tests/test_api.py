"""The Python API: rlkd.train returns the run, rlkd.load returns a policy with predict()."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch

import rlkd
from rlkd.errors import UserError
from tests.helpers import read_scalars

ROOT = Path(__file__).resolve().parents[1]


def test_readme_python_example_runs(tmp_path, monkeypatch):
    text = (ROOT / "README.md").read_text()
    code = re.search(r"## Python API\n\n```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)  # the example writes under ./runs
    scope: dict = {}
    exec(compile(code, "README.md", "exec"), scope)  # our own README's example
    run = scope["run"]
    assert run.path.parent == Path("runs") and (tmp_path / run.path / "config.yaml").is_file()
    returns = read_scalars(tmp_path / run.path)["charts/episodic_return"]
    assert run.metrics["charts/episodic_return"] == pytest.approx(returns[-1][1])
    assert run.config["seed"] == 3 and run.config["env_id"] == "CartPole-v1"
    assert scope["action"] in (0, 1)


def test_predict_single_and_batched_and_errors(tmp_path):
    run = rlkd.train(agent="ppo", preset="debug", env_id="CartPole-v1", run_dir=str(tmp_path / "r"))
    policy = rlkd.load(run.path)
    obs = np.random.default_rng(0).normal(size=(5, 4)).astype(np.float32)
    batch = policy.predict(obs, deterministic=True)
    assert batch.shape == (5,) and set(batch.tolist()) <= {0, 1}
    assert [policy.predict(o, deterministic=True) for o in obs] == batch.tolist()
    with pytest.raises(ValueError, match=r"expected observations of shape \(4,\)"):
        policy.predict(np.zeros(3))
    with pytest.raises(UserError, match="did you mean CartPole-v1"):
        rlkd.train(agent="ppo", preset="debug", env_id="CartPol-v1", run_dir=str(tmp_path / "bad"))


def test_dreamer_policy_keeps_a_latent_per_episode(tmp_path):
    run = rlkd.train(agent="dreamer", preset="debug", env_id="Pendulum-v1", total_steps=100,
                     run_dir=str(tmp_path / "d"))  # fmt: skip
    policy = rlkd.load(run.path)
    obs = np.zeros((2, 3), np.float32)
    torch.manual_seed(0)  # the posterior is sampled even for deterministic actions (official code)
    a = policy.predict(obs, deterministic=True, episode_start=np.ones(2, bool))
    assert a.shape == (2, 1) and np.all(np.abs(a) <= 2.0)  # Pendulum's torque bounds
    first = policy.policy.latent["deter"].clone()
    policy.predict(obs, deterministic=True)  # continues the episode: the latent moves on
    assert not torch.allclose(first, policy.policy.latent["deter"])
    policy.reset()
    torch.manual_seed(0)
    b = policy.predict(obs, deterministic=True)  # a new episode from the same observation
    assert np.array_equal(a, b) and torch.equal(first, policy.policy.latent["deter"])
