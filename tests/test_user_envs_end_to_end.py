"""A user's own envs, end to end: a module in the working folder (``my_envs:<id>``, see
tests/local_env_module.py) with discrete and continuous actions, vector and 64x64 pixel observations,
episodes that terminate and truncate, on Gymnasium's own sync and async vector envs.

Frame resizing (``--image-size 32``) is checked against cv2 on Gymnasium's vector envs directly, then
every agent runs train -> resume -> eval -> monitor calibrate on the user's envs, in-process and for a
few dozen steps each: Dreamer with the CPU pixel recipe (``--preset cpu-pixels``) on sync and async
envs, collect and pretraining then DisWM, and PPO with each intrinsic module.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv
from rlkd.envs import make_vec, registered_id
from rlkd.envs.wrappers import ResizeFrames, final_observations

from rlkd.cli import main
from rlkd.core.run import Run
from tests.helpers import read_scalars
from tests.test_reliability import error_line

MODULE = Path(__file__).with_name("local_env_module.py")
LENGTH = 6  # steps per episode of every Dot env (the module's default)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory):
    """The user's working folder, holding ``my_envs.py``, as the current folder (as ``python -m`` runs)."""
    folder = tmp_path_factory.mktemp("user_envs")
    (folder / "my_envs.py").write_text(MODULE.read_text())
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "path", [p for p in sys.path if p not in ("", str(folder))])
        mp.chdir(folder)
        registered_id("my_envs:DotPixels-v0")  # imports my_envs from the current folder, as rlkd does
        yield folder
    sys.modules.pop("my_envs", None)


def _resize(frames: np.ndarray) -> np.ndarray:
    return np.stack([cv2.resize(f, (32, 32), interpolation=cv2.INTER_AREA) for f in frames])


# ------------------------------------------------------------------------------------ resizing
@pytest.mark.parametrize("vector_cls", [SyncVectorEnv, AsyncVectorEnv])
@pytest.mark.parametrize("num_envs", [1, 3])
def test_resize_frames_on_gymnasiums_sync_and_async_vector_envs(workdir: Path, vector_cls, num_envs) -> None:
    dot = sys.modules["my_envs"].Dot

    def make() -> gym.vector.VectorEnv:
        fns = [dot for _ in range(num_envs)]
        return vector_cls(fns, autoreset_mode=AutoresetMode.SAME_STEP)

    raw, small = make(), ResizeFrames(make(), 32)
    try:
        obs, _ = raw.reset(seed=3)
        assert np.array_equal(small.reset(seed=3)[0], _resize(obs))
        ends, mixed = 0, False
        for t in range(2 * LENGTH + 2):
            actions = np.full(num_envs, t % 5)
            obs, _, term, trunc, info = raw.step(actions)
            obs32, _, term32, trunc32, info32 = small.step(actions)
            assert np.array_equal(obs32, _resize(obs)) and obs32.shape == (num_envs, 32, 32, 3)
            assert np.array_equal(term32, term) and np.array_equal(trunc32, trunc)
            if not np.any(info.get("_final_obs", False)):
                continue
            ends += 1
            mask = info["_final_obs"]
            assert np.array_equal(info32["_final_obs"], mask) and info32["final_obs"].dtype == object
            for i in range(num_envs):  # Gymnasium's layout kept: a frame where an episode ended, else None
                if mask[i]:
                    assert np.array_equal(info32["final_obs"][i], _resize(info["final_obs"][i][None])[0])
                else:
                    assert info32["final_obs"][i] is None
            # The true next observations, as the loop and the agents read them.
            assert np.array_equal(final_observations(info32, obs32), _resize(final_observations(info, obs)))
            mixed |= bool(np.any(term & ~trunc) and np.any(trunc & ~term))
        assert ends == 2  # both episode ends of every env (all envs end together)
        assert mixed or num_envs == 1  # some envs terminated while others truncated, in one step
    finally:
        raw.close()
        small.close()


def test_collect_resizes_a_user_pixel_env_including_final_frames(workdir: Path) -> None:
    argv = ["collect", "--env", "my_envs:DotPixelsBox-v0", "--episodes", "3", "--seed", "4",
            "--env-kwargs", "{image_size: 32}", "--out", "data32"]  # fmt: skip
    assert main(argv) == 0
    # The same rollout at 64x64: collect samples actions from the env's action space seeded alike.
    env = make_vec("my_envs:DotPixelsBox-v0", 1, 4)
    env.action_space.seed(4)
    frames, _ = env.reset(seed=4)
    episode: list[np.ndarray] = [frames[0]]
    for ep in range(3):
        while True:
            obs, _, term, trunc, info = env.step(env.action_space.sample())
            episode.append(final_observations(info, obs)[0])
            if term[0] or trunc[0]:
                break
        with np.load(workdir / "data32" / f"episode_{ep:06d}.npz", allow_pickle=False) as saved:
            assert saved["image"].shape == (LENGTH + 1, 32, 32, 3)
            assert np.array_equal(saved["image"], _resize(np.stack(episode)))  # the final frame too
        episode = [obs[0]]
    env.close()


# ------------------------------------------------------------------------------------ every agent
def _train_resume_eval_calibrate(run: str, train: list[str], total: int, more: int) -> None:
    """Train ``total`` steps, resume to ``total + more``, evaluate and calibrate the monitor, checking
    what each step wrote."""
    assert main(["train", *train, "--run-dir", run, "--total-steps", str(total)]) == 0
    first = Run.open(Path(run)).checkpoint_steps()[-1]
    assert first >= total
    assert main(["resume", run, "--total-steps", str(total + more)]) == 0
    assert Run.open(Path(run)).checkpoint_steps()[-1] > first
    lengths = [v for _, v in read_scalars(Path(run)).get("charts/episodic_length", [])]
    assert lengths and set(lengths) == {LENGTH}  # episodes ended (and were counted) while training
    assert main(["eval", run, "--episodes", "3"]) == 0
    record = json.loads(sorted((Path(run) / "eval").glob("eval_step_*.json"))[-1].read_text())
    assert record["per_episode"]["lengths"] == [LENGTH] * 3
    argv = ["monitor", "calibrate", run, "--episodes", "8", "--alpha", "0.5", "--updates", "5"]
    assert main(argv) == 0
    calibration = json.loads((Path(run) / "monitor" / "calibration.json").read_text())
    # The monitor keeps the terminated (successful) episodes and drops the truncated ones.
    assert 0.0 < calibration["success_rate"] < 1.0 and calibration["successful"] >= 2


# A few updates only: prefill ends half way through the first episodes.
SHORT = ["--prefill", "6", "--prefill-updates", "2", "--train-every", "6", "--checkpoint-interval", "6",
         "--log-interval", "6"]  # fmt: skip


def test_dreamer_cpu_pixels_on_a_user_pixel_env_with_gymnasiums_sync_envs(workdir: Path) -> None:
    # The recipe: `rlkd train --agent dreamer --preset cpu-pixels` on a user's 64x64 env.
    train = ["--agent", "dreamer", "--preset", "cpu-pixels", *SHORT, "--env", "my_envs:DotPixelsBox-v0",
             "--num-envs", "2"]  # fmt: skip
    _train_resume_eval_calibrate("dreamer_sync", train, total=2 * LENGTH, more=2 * LENGTH)
    assert Run.open(Path("dreamer_sync")).config["image_size"] == 32


def test_dreamer_on_a_user_pixel_env_with_gymnasiums_async_envs(workdir: Path) -> None:
    train = ["--agent", "dreamer", "--preset", "debug", "--image-size", "32", *SHORT, "--num-envs", "3",
             "--env", "my_envs:DotPixelsAsync-v0", "--env-kwargs", "{continuous: true}"]  # fmt: skip
    _train_resume_eval_calibrate("dreamer_async", train, total=3 * LENGTH, more=3 * LENGTH)
    envs = make_vec("my_envs:DotPixelsAsync-v0", 2, 0, continuous=True)
    assert isinstance(envs.unwrapped, AsyncVectorEnv)  # the user's own vector env served the run
    envs.close()


def test_dreamer_from_a_user_vector_env_and_discrete_actions_refused(workdir: Path, capsys) -> None:
    train = ["--agent", "dreamer", "--preset", "debug", *SHORT, "--env", "my_envs:DotVectorBox-v0",
             "--num-envs", "2"]  # fmt: skip
    _train_resume_eval_calibrate("dreamer_vector", train, total=2 * LENGTH, more=2 * LENGTH)
    argv = ["train", "--agent", "dreamer", "--preset", "debug", "--env", "my_envs:DotPixels-v0"]
    err = error_line(capsys, argv)
    assert "Discrete(5)" in err and "use PPO" in err


def test_pretrain_then_diswm_on_a_user_pixel_env(workdir: Path) -> None:
    argv = ["collect", "--env", "my_envs:DotPixelsBox-v0", "--episodes", "4", "--seed", "1",
            "--env-kwargs", "{image_size: 32}", "--out", "videos"]  # fmt: skip
    assert main(argv) == 0
    argv = ["train", "--agent", "pretrain", "--preset", "debug", "--data", "videos", "--image-size", "32",
            "--batch-length", "4", "--total-steps", "6", "--run-dir", "teacher"]  # fmt: skip
    assert main(argv) == 0
    train = ["--agent", "diswm", "--preset", "debug", "--pretrained", "teacher", "--image-size", "32",
             *SHORT, "--env", "my_envs:DotPixelsBox-v0", "--num-envs", "1"]  # fmt: skip
    _train_resume_eval_calibrate("diswm", train, total=2 * LENGTH, more=LENGTH)
    assert Run.open(Path("diswm")).config["agent"] == "diswm"


# One 4 x 12-step rollout (two episodes per env) before the first update, another after resuming.
PPO = ["--preset", "debug", "--num-steps", "12", "--checkpoint-interval", "48", "--log-interval", "48"]


@pytest.mark.parametrize(
    ("intrinsic", "env_id"),
    [
        ("none", "my_envs:DotVector-v0"),  # discrete actions, vector observations
        ("rnd", "my_envs:DotPixels-v0"),  # discrete, 64x64 pixels
        ("rdd", "my_envs:DotPixelsBox-v0"),  # continuous, pixels
        ("rnd", "my_envs:DotVectorBox-v0"),  # continuous, vector
    ],
)
def test_ppo_and_each_intrinsic_module_on_a_user_env(workdir: Path, intrinsic: str, env_id: str) -> None:
    run = f"ppo_{intrinsic}_{env_id.split(':')[1]}"
    train = [*PPO, "--intrinsic", intrinsic, "--env", env_id]
    _train_resume_eval_calibrate(run, train, total=48, more=48)
    assert Run.open(Path(run)).config["intrinsic"] == intrinsic
