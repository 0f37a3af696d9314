"""GAE against hand computations, with termination, truncation bootstrapping and non-episodic streams."""

from __future__ import annotations

import torch

from rlkd.nn.returns import gae


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_gae_single_env_no_ends_matches_hand_computation():
    # gamma=0.5, lam=0.5, r=[1,1], V=[1,2], V(s_2)=4.
    # delta_1 = 1 + 0.5*4 - 2 = 1;  A_1 = 1
    # delta_0 = 1 + 0.5*2 - 1 = 1;  A_0 = 1 + 0.25*1 = 1.25
    adv = gae(t([[1.0], [1.0]]), t([[1.0], [2.0]]), t([[2.0], [4.0]]), t([[0], [0]]), t([[0], [0]]), 0.5, 0.5)
    torch.testing.assert_close(adv, t([[1.25], [1.0]]))


def test_gae_termination_cuts_bootstrap_and_recursion():
    # Step 0 terminates: delta_0 = r_0 - V_0 = 1 - 1 = 0 and nothing flows back from step 1.
    # delta_1 = 2 + 0.5*4 - 3 = 1
    adv = gae(
        t([[1.0], [2.0]]), t([[1.0], [3.0]]), t([[99.0], [4.0]]), t([[1], [0]]), t([[1], [0]]), 0.5, 0.5
    )
    torch.testing.assert_close(adv, t([[0.0], [1.0]]))


def test_gae_truncation_bootstraps_with_final_value_but_does_not_leak():
    # Step 0 is truncated; V(final_obs)=6 is in next_values: delta_0 = 1 + 0.5*6 - 1 = 3, no recursion.
    # If truncation were treated as termination, A_0 would be 0.
    adv = gae(t([[1.0], [2.0]]), t([[1.0], [3.0]]), t([[6.0], [4.0]]), t([[0], [0]]), t([[1], [0]]), 0.5, 0.5)
    torch.testing.assert_close(adv, t([[3.0], [1.0]]))


def test_gae_non_episodic_stream_ignores_episode_ends_two_envs():
    # Intrinsic return (RND): zero flags everywhere. gamma=0.9, lam=1 -> A_t = sum of discounted deltas.
    # env 0: r=[1,0,2], V=[0,0,0], next=[0,0,0] -> deltas [1,0,2]; A=[1+0+0.81*2, 0+0.9*2, 2]=[2.62,1.8,2]
    # env 1: r=[0,0,0], V=[1,1,1], next=[1,1,1] -> deltas [-0.1]*3; A_2=-0.1, A_1=-0.19, A_0=-0.271
    rewards = t([[1.0, 0.0], [0.0, 0.0], [2.0, 0.0]])
    values = t([[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]])
    zeros = torch.zeros_like(rewards)
    adv = gae(rewards, values, values.clone(), zeros, zeros, 0.9, 1.0)
    torch.testing.assert_close(adv, t([[2.62, -0.271], [1.8, -0.19], [2.0, -0.1]]))
