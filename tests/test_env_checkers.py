"""Every env rlkd registers passes Gymnasium's and Stable-Baselines3's env checkers, and point reach's
random stream is what it was before it moved to Gymnasium's ``np_random`` (benchmarks depend on it)."""

from __future__ import annotations

import hashlib
import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gymnasium_check_env
from gymnasium.vector import AutoresetMode
from rlkd.envs import gymnasium_ids, make_vec
from rlkd.envs.reach import RED_AGENT, PointReachVectorEnv
from stable_baselines3.common.env_checker import check_env as sb3_check_env

RLKD_IDS = [env_id for env_id in gymnasium_ids() if env_id.startswith("rlkd/")]


def test_the_registry_holds_every_family() -> None:
    families = {env_id.split("-")[0] for env_id in RLKD_IDS}
    assert families >= {"rlkd/AGVWarehouse", "rlkd/DMC", "rlkd/PointReach"} and len(RLKD_IDS) >= 22


@pytest.mark.parametrize("env_id", RLKD_IDS)
def test_every_registered_env_passes_gymnasium_and_sb3_env_checkers(env_id: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # PointReach-Pixels-v0: "out of date"
        env = gym.make(env_id)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # DMC renders its observations (~0.1 s a frame on CPU): the render-mode check would make
            # and step each env again through its rgb_array path, which every step already takes.
            gymnasium_check_env(env.unwrapped, skip_render_check=env_id.startswith("rlkd/DMC"))
            sb3_check_env(env, warn=True)
        # Both checkers report soft problems as warnings: none is acceptable either.
        assert [str(w.message) for w in caught] == []
    finally:
        env.close()


def test_a_checker_catches_the_unseeded_reset_this_suite_guards_against() -> None:
    class OwnGenerator(gym.Env):
        """Keeps its own generator, as point reach did: reset never calls super().reset(seed=seed)."""

        observation_space = gym.spaces.Box(0.0, 1.0, (2,), np.float32)
        action_space = gym.spaces.Discrete(2)

        def reset(self, *, seed=None, options=None):
            self.rng = np.random.default_rng(seed)
            return self.rng.uniform(0, 1, 2).astype(np.float32), {}

        def step(self, action):
            return self.rng.uniform(0, 1, 2).astype(np.float32), 0.0, False, False, {}

    with pytest.raises(AssertionError, match=r"super\(\).reset\(seed=seed\)"):
        gymnasium_check_env(OwnGenerator(), skip_render_check=True)


# ------------------------------------------------------------------------------------ point reach stream
def _digest(chunks: list[np.ndarray]) -> str:
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(np.ascontiguousarray(chunk).tobytes())
    return h.hexdigest()[:16]


def _vector_stream(kwargs: dict, n: int, seed: int, switch: str | None = None, steps: int = 120) -> str:
    """Seeded reset, steps across autoresets (a colour switch half way), unseeded reset, reseed."""
    env = PointReachVectorEnv(n, **kwargs)
    actions = np.random.default_rng(99).uniform(-1, 1, (steps, n, 2)).astype(np.float32)
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for t in range(steps):
        if switch and t == steps // 2:
            env.set_color_set(switch)
        obs, reward, _, _, info = env.step(actions[t])
        out += [obs, reward, info["final_obs"]]
    out.append(env.reset()[0])  # an unseeded reset continues the stream
    out += [env.step(actions[t])[0] for t in range(10)]
    out.append(env.reset(seed=seed + 1)[0])
    return _digest(out)


def _single_stream(env_id: str, seed: int, kwargs: dict | None = None, steps: int = 120) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        env = gym.make(env_id, **(kwargs or {}))
    actions = np.random.default_rng(7).uniform(-1, 1, (steps, 2)).astype(np.float32)
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for t in range(steps):
        obs, reward, term, trunc, _ = env.step(actions[t])
        out += [obs, np.float64(reward)]
        if term or trunc:
            out.append(env.reset()[0])
    out.append(env.reset(seed=seed)[0])
    return _digest(out)


def _batched_stream(envs: gym.vector.VectorEnv, n: int, seed: int, steps: int = 120) -> str:
    actions = np.random.default_rng(5).uniform(-1, 1, (steps, n, 2)).astype(np.float32)
    obs, _ = envs.reset(seed=seed)
    out = [obs]
    for t in range(steps):
        obs, reward, _, _, info = envs.step(actions[t])
        out += [obs, reward]
        if isinstance(envs.unwrapped, gym.vector.SyncVectorEnv) and "final_obs" in info:
            out += [x for x in info["final_obs"] if x is not None]
    envs.close()
    return _digest(out)


def _sync_copies() -> gym.vector.VectorEnv:
    same_step = {"autoreset_mode": AutoresetMode.SAME_STEP}
    return gym.make_vec("rlkd/PointReach-Pixels-v1", 2, vectorization_mode="sync", vector_kwargs=same_step)


PIXELS, VECTOR = {"obs_mode": "pixels"}, {"obs_mode": "vector"}
# Digests of the streams made by envs/reach.py before it drew from Gymnasium's np_random (its own
# np.random.default_rng(seed)), computed with that code on the same steps.
STREAMS = {
    "vector 4 envs seed 3": (lambda: _vector_stream(VECTOR, 4, 3), "9142511c4829af71"),
    "pixels 1 env seed 0": (lambda: _vector_stream(PIXELS, 1, 0), "bc5d66bd63f0492c"),
    "red agent 1 env seed 3": (
        lambda: _vector_stream({**PIXELS, "agent_rgb": RED_AGENT}, 1, 3), "d5d73f51b5d0cf38"
    ),
    "colours train->test 4 envs": (
        lambda: _vector_stream({**PIXELS, "color_set": "train"}, 4, 0, switch="test"), "31cdc07692738862"
    ),
    "vector colours test seed 12345": (
        lambda: _vector_stream({**VECTOR, "color_set": "test"}, 4, 12345), "d3c0a74c5cb303ad"
    ),
    "single PointReach-v0 seed 42": (lambda: _single_stream("rlkd/PointReach-v0", 42), "4d3427fd3e1cfe3f"),
    "single Pixels-v0 seed 42": (lambda: _single_stream("rlkd/PointReach-Pixels-v0", 42), "53027aef6e6497c2"),
    "single Pixels-v1 colours seed 0": (
        lambda: _single_stream("rlkd/PointReach-Pixels-v1", 0, {"color_set": "train"}), "e40b06f2562a7a75"
    ),
    "make_vec PointReach-v0 seed 42": (
        lambda: _batched_stream(make_vec("rlkd/PointReach-v0", 3, 42), 3, 42), "0d8d29cbcd6b8eef"
    ),
    "make_vec 32x32 seed 4": (
        lambda: _batched_stream(make_vec("rlkd/PointReach-Pixels-v1", 2, 4, image_size=32), 2, 4),
        "358a49675017895a",
    ),
    "Gymnasium sync copies seed 0": (lambda: _batched_stream(_sync_copies(), 2, 0), "4698acdd06630cc6"),
}


@pytest.mark.parametrize("name", list(STREAMS))
def test_point_reach_streams_are_bit_identical_to_its_own_generator(name: str) -> None:
    make, expected = STREAMS[name]
    assert make() == expected


def test_point_reach_seeds_gymnasiums_generator_as_default_rng_does() -> None:
    # Gymnasium's seeding makes the very generator np.random.default_rng made for an int seed ...
    seeded, _ = gym.utils.seeding.np_random(17)
    assert seeded.bit_generator.state == np.random.default_rng(17).bit_generator.state
    # ... and reset places agents and targets with its draws, in the order it always drew them.
    env = PointReachVectorEnv(2)
    env.reset(seed=17)
    rng = np.random.default_rng(17)
    for i in range(2):
        agent, target = rng.uniform(0.1, 0.9, (2, 2))
        while np.linalg.norm(agent - target) < env.min_start_distance:
            agent, target = rng.uniform(0.1, 0.9, (2, 2))
        assert np.array_equal(env.agent[i], agent) and np.array_equal(env.target[i], target)
    single = gym.make("rlkd/PointReach-v0").unwrapped
    single.reset(seed=17)
    assert single.vec.np_random is single.np_random  # one generator for the env and its vector code
    a, b = single.reset(seed=5)[0], single.reset(seed=5)[0]
    assert np.array_equal(a, b) and not np.array_equal(a, single.reset(seed=6)[0])
