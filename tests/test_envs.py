"""The vector-env layer: one API over envpool and Gymnasium, SAME_STEP autoreset, seeds, bad ids."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode
from rlkd.envs import envpool_ids, make_vec, resolve_backend
from rlkd.envs.specs import register_spec_file

from rlkd.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(params=["envpool", "gymnasium"])
def cartpole(request):
    envs = make_vec("CartPole-v1", 3, seed=7, backend=request.param)
    yield envs
    envs.close()


def test_same_api_for_envpool_and_gymnasium(cartpole):
    assert cartpole.metadata["autoreset_mode"] == AutoresetMode.SAME_STEP
    assert cartpole.num_envs == 3
    assert cartpole.single_observation_space.shape == (4,)
    assert cartpole.observation_space.shape == (3, 4)
    assert cartpole.single_action_space == gym.spaces.Discrete(2)
    assert cartpole.action_space.shape == (3,)
    obs, _ = cartpole.reset(seed=7)
    assert obs.shape == (3, 4) and obs.dtype == np.float32


def test_autoreset_same_step_reports_final_obs_and_episode_stats(cartpole):
    obs, _ = cartpole.reset(seed=7)
    lengths = np.zeros(3, dtype=int)
    returns = np.zeros(3)
    seen_end = False
    for _ in range(200):
        prev = obs
        # Always push right: CartPole falls over within ~10-40 steps.
        obs, reward, term, trunc, info = cartpole.step(np.ones(3, dtype=np.int64))
        lengths += 1
        returns += reward
        done = term | trunc
        if done.any():
            seen_end = True
            assert info["_final_obs"].tolist() == done.tolist()
            assert info["_episode"].tolist() == done.tolist()
            for i in np.flatnonzero(done):
                final = np.asarray(info["final_obs"][i])
                # The terminal state is beyond CartPole's angle/position limits; the returned obs is a
                # fresh reset (all components within +-0.05).
                assert abs(final[2]) > 0.2 or abs(final[0]) > 2.4
                assert np.all(np.abs(obs[i]) <= 0.05)
                assert info["episode"]["l"][i] == lengths[i]
                assert info["episode"]["r"][i] == pytest.approx(returns[i])
            lengths[done] = 0
            returns[done] = 0
        else:
            assert "_final_obs" not in info or not info["_final_obs"].any()
        del prev
    assert seen_end


@pytest.mark.parametrize("backend", ["envpool", "gymnasium"])
def test_deterministic_by_seed(backend):
    def trajectory(seed):
        envs = make_vec("CartPole-v1", 2, seed=seed, backend=backend)
        obs, _ = envs.reset(seed=seed)
        out = [obs]
        rng = np.random.default_rng(0)
        for _ in range(50):
            obs, *_ = envs.step(rng.integers(0, 2, size=2))
            out.append(obs)
        envs.close()
        return np.stack(out)

    a, b, c = trajectory(3), trajectory(3), trajectory(4)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_envpool_truncation_is_not_termination():
    # Pendulum never terminates; envpool truncates at 200 steps. Both envs end together.
    envs = make_vec("Pendulum-v1", 2, seed=0, backend="envpool")
    envs.reset(seed=0)
    for step in range(1, 201):
        _, _, term, trunc, info = envs.step(np.zeros((2, 1), dtype=np.float32))
        assert not term.any()
        if step < 200:
            assert not trunc.any()
    assert trunc.all() and info["_final_obs"].all()
    assert info["episode"]["l"].tolist() == [200, 200]
    envs.close()


def test_envpool_dict_observations_are_flattened():
    envs = make_vec("CheetahRun-v1", 2, seed=0, backend="envpool")
    obs, _ = envs.reset(seed=0)
    assert envs.single_observation_space.shape == (17,)  # 8 positions + 9 velocities
    assert obs.shape == (2, 17) and obs.dtype == np.float32
    envs.close()


def test_backend_choice_and_unknown_ids():
    assert resolve_backend("CartPole-v1") == "envpool"
    assert resolve_backend("CartPole-v1", "gymnasium") == "gymnasium"
    assert resolve_backend("rlkd/AGVWarehouse-v0") == "gymnasium"
    with pytest.raises(UserError, match=r"did you mean.*CartPole-v1"):
        make_vec("CartPol-v1", 1, 0)
    with pytest.raises(UserError, match="envpool has no task"):
        resolve_backend("rlkd/AGVWarehouse-v0", "envpool")
    with pytest.raises(UserError, match="unknown env backend"):
        resolve_backend("CartPole-v1", "ray")
    with pytest.raises(UserError, match="at least 1"):
        make_vec("CartPole-v1", 0, 0)


def test_envpool_task_table_is_what_envpool_registers():
    # A fresh process (this one has imported envpool already): the table in the package equals a
    # new registration of every family, and making CartPole registers its family alone.
    code = textwrap.dedent(
        """
        import json, subprocess, sys
        from rlkd.envs import make_vec
        envs = make_vec("CartPole-v1", 2, 0)
        families = [m for m in sys.modules if m.startswith("envpool.") and m.endswith(".registration")
                    and m != "envpool.registration"]
        loaded = sorted(m[len("envpool."):-len(".registration")] for m in families)
        print(json.dumps({"loaded": loaded, "threads": envs.unwrapped._env.spec.config.num_threads}))
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    seen = json.loads(out.stdout.splitlines()[-1])
    assert seen["loaded"] == ["classic_control"]
    assert seen["threads"] == min(2, len(os.sched_getaffinity(0)))
    fresh = subprocess.run(
        [sys.executable, "-c", "import json, envpool_tasks; print(json.dumps(envpool_tasks.task_table()))"],
        capture_output=True, text=True, check=True, cwd=ROOT / "scripts",
    )  # fmt: skip
    table = json.loads((ROOT / "envs" / "envpool_tasks.json").read_text())
    assert json.loads(fresh.stdout) == table
    assert table["tasks"]["CartPole-v1"] == "classic_control" and table["tasks"]["Pong-v5"] == "atari"
    assert set(table["tasks"]) == set(envpool_ids())  # this process registered everything


def test_module_colon_ids_and_yaml_specs(tmp_path):
    envs = make_vec("tests.user_envs:Corridor-v0", 2, 0)
    assert envs.single_action_space == gym.spaces.Discrete(2)
    envs.close()
    with pytest.raises(UserError, match=r"cannot import 'no_such_pkg'"):
        make_vec("no_such_pkg:Env-v0", 1, 0)

    spec = tmp_path / "corridor.yaml"
    spec.write_text(
        textwrap.dedent(
            """
            id: test/Corridor-v0
            entry_point: tests.user_envs:Corridor
            kwargs: {length: 4}
            max_episode_steps: 7
            """
        )
    )
    env_id = register_spec_file(spec)
    assert env_id == "test/Corridor-v0"
    envs = make_vec(str(spec), 1, 0)
    envs.reset(seed=0)
    # Always stepping left never reaches the end: the episode limit of 7 truncates it.
    for step in range(1, 8):
        _, _, term, trunc, _ = envs.step(np.zeros(1, dtype=np.int64))
        assert not term.any()
        assert trunc.any() == (step == 7)
    envs.close()

    bad = tmp_path / "bad.yaml"
    bad.write_text("id: x/Y-v0\nentry_point: no_colon_here\n")
    with pytest.raises(UserError, match=r"module\.path:ClassName"):
        register_spec_file(bad)
    bad.write_text("id: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        register_spec_file(bad)


def test_final_observations_replace_only_ended_envs():
    from rlkd.envs.wrappers import final_observations

    obs = np.zeros((3, 2), dtype=np.float32)
    info = {
        "final_obs": np.array([None, np.ones(2, np.float32), None], dtype=object),
        "_final_obs": np.array([False, True, False]),
    }
    out = final_observations(info, obs)
    np.testing.assert_array_equal(out, [[0, 0], [1, 1], [0, 0]])
    assert obs.sum() == 0  # the input is not modified
