"""Point reach env: dynamics, reward, success, autoreset, pixels, and its reference controllers."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from rlkd.envs import make_vec
from rlkd.envs.reach import (
    AGENT,
    RED_AGENT,
    TARGET,
    PointReachVectorEnv,
    centre_action,
    greedy_action,
    to_pixel,
)


def run_policy(env_id: str, policy: str, steps: int = 500, n: int = 8) -> tuple[float, float]:
    env = make_vec(env_id, n, seed=0, backend="gymnasium")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    sim = env.unwrapped
    returns, successes = [], []
    for _ in range(steps):
        if policy == "random":
            action = rng.uniform(-1, 1, (n, 2))
        elif policy == "centre":
            action = centre_action(sim.agent)
        else:
            action = greedy_action(sim.agent, sim.target)
        _, _, _, _, info = env.step(action)
        if "episode" in info:
            ended = info["_episode"]
            returns += info["episode"]["r"][ended].tolist()
            successes += info["episode"]["success"][ended].tolist()
    return float(np.mean(returns)), float(np.mean(successes))


def test_reference_controllers_order_the_task() -> None:
    random_ret, random_succ = run_policy("rlkd/PointReach-v0", "random")
    centre_ret, centre_succ = run_policy("rlkd/PointReach-v0", "centre")
    greedy_ret, greedy_succ = run_policy("rlkd/PointReach-v0", "greedy")
    assert greedy_succ == 1.0 and random_succ < 0.1 and centre_succ < 0.2
    assert random_ret < centre_ret < greedy_ret
    assert greedy_ret > -2.0 and random_ret < -20.0  # the target must be seen to score


def test_step_moves_clips_and_rewards_minus_the_distance() -> None:
    env = PointReachVectorEnv(2, max_episode_steps=3)
    env.reset(seed=1)
    env.agent[:] = [[0.5, 0.5], [0.95, 0.02]]
    env.target[:] = [[0.8, 0.5], [0.5, 0.5]]
    _, reward, term, trunc, info = env.step(np.array([[1.0, 0.0], [1.0, -1.0]]))
    np.testing.assert_allclose(env.agent, [[0.6, 0.5], [1.0, 0.0]])  # 0.1 per unit action, clipped
    np.testing.assert_allclose(reward, [-0.2, -np.hypot(0.5, 0.5)], rtol=1e-6)
    assert not term.any() and not trunc.any() and not info["is_success"].any()
    env.agent[0] = [0.75, 0.5]
    _, _, _, _, info = env.step(np.zeros((2, 2)))
    assert info["is_success"].tolist() == [True, False]
    obs, _, _, trunc, info = env.step(np.zeros((2, 2)))  # third step: both episodes end
    assert trunc.all() and info["_final_obs"].all()
    np.testing.assert_allclose(info["final_obs"][0], [0.75, 0.5, 0.8, 0.5], rtol=1e-6)
    assert not np.allclose(obs, info["final_obs"])  # new episodes started in the same call
    assert (env.t == 0).all() and (env.distances() >= env.min_start_distance).all()


def test_pixels_show_the_agent_and_target_where_they_are() -> None:
    env = PointReachVectorEnv(1, obs_mode="pixels")
    env.reset(seed=2)
    env.agent[:] = [[0.2, 0.8]]
    env.target[:] = [[0.7, 0.3]]
    frame = env.observe()[0]
    assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
    (ac, ar), (tc, tr) = to_pixel(env.agent[0]), to_pixel(env.target[0])
    assert tuple(frame[ar, ac]) == AGENT and tuple(frame[tr, tc]) == TARGET
    assert ar < tr and ac < tc  # y up: the agent (higher y) is drawn nearer the top
    assert (frame == AGENT).all(-1).sum() == 49 and (frame == TARGET).all(-1).sum() == 81


def test_single_env_and_registration() -> None:
    env = gym.make("rlkd/PointReach-Pixels-v1")
    obs, _ = env.reset(seed=0)
    assert obs.shape == (64, 64, 3) and (obs == AGENT).all(-1).sum() == 49
    old, _ = gym.make("rlkd/PointReach-Pixels-v0").reset(seed=0)  # v0 drew the agent red
    assert (old == RED_AGENT).all(-1).sum() == 49 and not (old == AGENT).all(-1).any()
    assert ((old == RED_AGENT).all(-1) == (obs == AGENT).all(-1)).all()  # same place, same seed
    for _ in range(50):
        obs, reward, term, trunc, info = env.step(env.action_space.sample())
        assert reward <= 0.0 and "is_success" in info
    assert trunc and not term
    with pytest.raises(ValueError, match="obs_mode"):
        PointReachVectorEnv(1, obs_mode="lidar")


def test_resized_frames_keep_the_final_observation_and_refuse_vector_envs() -> None:
    from rlkd.envs import make_vec

    from rlkd.errors import UserError

    envs = make_vec("rlkd/PointReach-Pixels-v1", 2, 0, image_size=32)
    obs, _ = envs.reset(seed=0)
    assert obs.shape == (2, 32, 32, 3) and envs.single_observation_space.shape == (32, 32, 3)
    inner = envs.unwrapped
    for _ in range(50):
        # Zero actions and fixed colours: the episode's final 64x64 frame is the one seen before.
        last = inner.observe()
        obs, _, _, trunc, info = envs.step(np.zeros((2, 2)))
    assert trunc.all() and info["final_obs"].shape == (2, 32, 32, 3)
    # Area interpolation: each 32x32 pixel is the mean of a 2x2 block of the 64x64 frame.
    block = last.reshape(2, 32, 2, 32, 2, 3).astype(np.float64).mean((2, 4))
    assert np.abs(info["final_obs"].astype(np.float64) - block).max() <= 1.0
    assert not np.array_equal(info["final_obs"], obs)  # the next episode's first frame differs
    with pytest.raises(UserError, match="square RGB pixel observations"):
        make_vec("rlkd/PointReach-v0", 1, 0, image_size=32)


def test_distractor_colours_come_from_disjoint_hue_sets_and_switch() -> None:
    from rlkd.envs.agv.colors import COLOR_SETS, rgb_to_hue

    env = PointReachVectorEnv(16, "pixels", color_set="train")
    obs, _ = env.reset(seed=0)
    for _ in range(30):
        obs, *_ = env.step(np.zeros((16, 2)))
    floor_hue = rgb_to_hue(obs[:, 0, 0])  # the corner is floor
    lo, hi = COLOR_SETS["train"]
    assert ((floor_hue >= lo - 0.01) & (floor_hue <= hi + 0.01)).all()
    env.set_color_set("test")
    obs = env.observe()
    floor_hue = rgb_to_hue(obs[:, 0, 0])
    lo, hi = COLOR_SETS["test"]
    assert ((floor_hue >= lo - 0.01) & (floor_hue <= hi + 0.01)).all()
    plain = PointReachVectorEnv(1, "pixels")
    plain.reset(seed=0)
    assert tuple(plain.observe()[0, 0, 0]) == (40, 40, 40)  # no distractor: the fixed floor
