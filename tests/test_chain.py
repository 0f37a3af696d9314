"""rlkd/LureChain-v0: the lure pays only near the start, the goal ends a success, slips reverse moves."""

from __future__ import annotations

import numpy as np
import pytest
from rlkd.envs import make_vec
from rlkd.envs.chain import GIVE_UP, LEFT, RIGHT, LureChainVectorEnv


def test_walking_right_without_slips_reaches_the_goal_as_a_success() -> None:
    env = LureChainVectorEnv(2, length=5, slip=0.0, max_episode_steps=50)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (2, 5) and (obs.argmax(1) == 0).all() and obs.sum() == 2
    for _ in range(3):
        _, reward, term, _, _ = env.step(np.array([RIGHT, RIGHT]))
        assert not term.any() and (reward == 0).all()
    obs, reward, term, _, info = env.step(np.array([RIGHT, LEFT]))
    assert term.tolist() == [True, False] and reward.tolist() == [1.0, 0.0]
    assert info["is_success"].tolist() == [True, False]
    assert info["final_obs"][0].argmax() == 4 and obs[0].argmax() == 0  # same-step autoreset


def test_the_lure_pays_only_in_the_first_cells_and_ends_the_episode() -> None:
    env = LureChainVectorEnv(2, length=10, slip=0.0, lure_cells=2, lure_reward=0.05)
    env.reset(seed=0)
    env.step(np.array([RIGHT, RIGHT]))
    _, reward, term, _, _ = env.step(np.array([GIVE_UP, RIGHT]))  # env 0 gives up in cell 1: paid
    assert term.tolist() == [True, False] and reward == pytest.approx([0.05, 0.0])
    _, reward, term, _, info = env.step(np.array([RIGHT, GIVE_UP]))  # env 1 gives up in cell 2: unpaid
    assert term.tolist() == [False, True] and reward.tolist() == [0.0, 0.0]
    assert not info["is_success"].any()
    env.reset(seed=0)
    _, reward, term, _, _ = env.step(np.array([GIVE_UP, LEFT]))
    assert reward == pytest.approx([0.05, 0.0]) and term.tolist() == [True, False]


def test_slips_reverse_about_the_given_share_of_moves() -> None:
    env = LureChainVectorEnv(4000, length=10, slip=0.25, max_episode_steps=5)
    env.reset(seed=1)
    env.step(np.full(4000, RIGHT))
    obs, *_ = env.step(np.full(4000, RIGHT))
    # From cell 1 (or 0 after a slip at the wall), a second right-move reaches cell 2 unless it slips.
    share_back = (obs.argmax(1) < 2).mean()
    assert share_back == pytest.approx(0.25 + 0.75 * 0.25, abs=0.03)  # slip now, or slipped before


def test_time_limit_truncates_and_make_vec_serves_the_registered_id() -> None:
    envs = make_vec("rlkd/LureChain-v0", 3, seed=0)
    assert envs.single_observation_space.shape == (60,) and envs.single_action_space.n == 3
    envs.reset(seed=0)
    for _ in range(200):
        _, _, term, trunc, info = envs.step(np.full(3, LEFT))
        assert not term.any()
    assert trunc.all() and (info["episode"]["l"] == 200).all() and not info["episode"]["success"].any()


def test_a_random_policy_almost_never_reaches_the_far_end() -> None:
    env = LureChainVectorEnv(256, slip=0.1)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    successes = 0
    for _ in range(400):  # two episode lengths: every env ends at least one episode
        _, _, _, _, info = env.step(rng.choice([LEFT, RIGHT], 256))  # moves only: no lure
        successes += int(info["is_success"].sum())
    assert successes == 0
