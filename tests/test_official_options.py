"""The official DisWM code's behaviours that rlkd matches or reproduces by option (fast, CPU).

Each test pins one row of docs/diswm.md's deviation table against a hand computation.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from rlkd.agents import dreamer
from rlkd.agents.pretrain import PRESETS as PRETRAIN_PRESETS
from rlkd.agents.pretrain import PretrainConfig

from rlkd.world_model.behaviour import Actor, lambda_return
from rlkd.world_model.replay import Replay
from rlkd.world_model.rssm import RSSM


def test_lambda_returns_in_order_and_in_the_official_reversed_order() -> None:
    # Hand example: H = 5 imagined states, rewards r_t = t for the 4 steps, gamma = lambda = 1,
    # values 0: R_t = sum of the rewards from t on = [6, 6, 5, 3].
    reward = torch.arange(4.0)[:, None]
    zeros = torch.zeros(4, 1)
    ones = torch.ones(4, 1)
    right = lambda_return(reward, zeros, ones, torch.zeros(1), 1.0)
    torch.testing.assert_close(right[:, 0], torch.tensor([6.0, 6.0, 5.0, 3.0]))
    # The official static_scan_for_lambda_return keeps the backward order: step j gets R_{3-j}.
    official = lambda_return(reward, zeros, ones, torch.zeros(1), 1.0, official_order=True)
    torch.testing.assert_close(official[:, 0], torch.tensor([3.0, 5.0, 6.0, 6.0]))


def test_official_actions_are_not_clipped() -> None:
    torch.manual_seed(0)
    feat = torch.randn(4000, 6)
    clipped, unclipped = Actor(6, 2, 16, 1.0, clip=True), Actor(6, 2, 16, 1.0, clip=False)
    unclipped.load_state_dict(clipped.state_dict())
    a, _, _ = clipped.sample(feat)
    b, _, _ = unclipped.sample(feat)
    assert a.abs().max() < 1.0
    # std >= 1: a good share of the Normal's samples leave [-1, 1] when nothing clips them.
    assert (b.abs() > 1.0).float().mean() > 0.2
    # Straight-through: with the same noise, clipped samples pass the unclipped samples' gradient.
    grads = []
    for actor in (clipped, unclipped):
        x = feat[:64].clone().requires_grad_(True)
        torch.manual_seed(1)
        actor.sample(x)[0].sum().backward()
        grads.append(x.grad)
    torch.testing.assert_close(grads[0], grads[1])


def test_the_paper_pretraining_preset_runs_the_official_20000_updates() -> None:
    # Official loop (pretrain.py l. 209-213): 10 passes of range(0, 100000, 50) = 20,000 updates.
    assert PRETRAIN_PRESETS["paper"]["total_steps"] == 20_000
    assert PretrainConfig().total_steps == 20_000
    assert PretrainConfig().sample_posterior is False  # the official obs_step_af uses the mode


def test_rssm_observe_without_sampling_feeds_the_posterior_mean() -> None:
    torch.manual_seed(0)
    rssm = RSSM(embed=5, action_dim=0, deter=6, stoch=3, hidden=8, min_std=0.1)
    embed, first = torch.randn(2, 4, 5), torch.zeros(2, 4, dtype=torch.bool)
    post, _ = rssm.observe(embed, None, first, sample=False)
    torch.testing.assert_close(post["stoch"], post["mean"])
    again, _ = rssm.observe(embed, None, first, sample=False)
    torch.testing.assert_close(again["deter"], post["deter"])  # deterministic
    sampled, _ = rssm.observe(embed, None, first)
    assert not torch.allclose(sampled["stoch"], sampled["mean"])


def test_posterior_input_layer_is_initialised_as_one_linear_map() -> None:
    # Official: one Linear(deter + embed -> hidden), PyTorch's default U(-1/sqrt(fan_in), ...).
    torch.manual_seed(0)
    deter, embed = 200, 1024
    rssm = RSSM(embed=embed, action_dim=2, deter=deter, stoch=4, hidden=300, min_std=0.1)
    bound = 1.0 / math.sqrt(deter + embed)
    for p in (rssm.obs_deter.weight, rssm.obs_deter.bias, rssm.obs_embed.weight):
        assert p.abs().max() <= bound
        assert p.abs().max() > 0.95 * bound  # uniform over the whole interval, not a narrower one
    # Each half alone would have had the wider bounds 1/sqrt(200) and 1/sqrt(1024).
    assert bound < 1.0 / math.sqrt(embed)


def fill(replay: Replay, episodes: list[int]) -> None:
    """Add episodes of the given lengths to env 0: first step flagged, steps numbered in obs."""
    step = 0
    for length in episodes:
        for t in range(length):
            replay.add(0, np.full(1, step, np.float32), np.full(2, step, np.float32), 0.0, t == 0, False)
            step += 1


def test_replay_finished_only_never_samples_the_running_episode() -> None:
    replay = Replay(1, 100, (1,), np.float32, 2, seed=0, finished_only=True)
    fill(replay, [10])  # one running episode of 10 steps, not finished yet
    assert not replay.has_window(4)
    fill(replay, [6])  # the first one ended (a new one began): steps 0-9 are finished
    assert replay.has_window(4) and not replay.has_window(11)
    obs = replay.sample(500, 4)["obs"][..., 0]
    assert obs.max() <= 9 and obs.min() == 0  # windows lie in steps 0..9, never in 10..15
    everything = Replay(1, 100, (1,), np.float32, 2, seed=0)
    fill(everything, [10, 6])
    assert everything.sample(500, 4)["obs"].max() == 15


def test_replay_finished_only_counts_after_the_ring_wraps_and_round_trips() -> None:
    replay = Replay(1, 12, (1,), np.float32, 2, seed=0, finished_only=True)
    fill(replay, [10, 5, 3])  # 18 steps in a ring of 12: kept steps 6..17, running episode 15..17
    obs = replay.sample(300, 3)["obs"][..., 0]
    assert obs.min() >= 6 and obs.max() <= 14
    copy = Replay(1, 12, (1,), np.float32, 2, seed=0, finished_only=True)
    copy.load_state_dict(replay.state_dict())
    np.testing.assert_array_equal(copy.sample(5, 3)["obs"], replay.sample(5, 3)["obs"])


def test_official_window_start_keeps_the_stored_action_and_flag() -> None:
    replay = Replay(1, 100, (1,), np.float32, 2, seed=0)
    fill(replay, [30])
    marked = replay.sample(50, 5)
    assert marked["is_first"][:, 0].all()
    official = replay.sample(50, 5, mark_start=False)
    starts = official["obs"][:, 0, 0]
    # Mid-episode windows keep is_first False and the stored action (= the step number here).
    assert (official["is_first"][:, 0] == (starts == 0)).all()
    np.testing.assert_array_equal(official["action"][:, 0, 0], starts)


def test_official_window_start_starts_from_zero_state_with_the_stored_action() -> None:
    cfg = dataclasses.replace(dreamer.DreamerConfig(), deter=8, stoch=4, hidden=8, units=8, mlp_layers=2)
    torch.manual_seed(0)
    rssm = dreamer.Agent(cfg, (3,), 2).wm.rssm
    embed, action = torch.randn(2, 3, rssm.obs_embed.in_features), torch.randn(2, 3, 2)
    not_first = torch.zeros(2, 3, dtype=torch.bool)
    post, _ = rssm.observe(embed, action, not_first, sample=False)
    # Step 0 by hand from the zero state with the stored action.
    zero = rssm.initial(2, "cpu")
    deter = rssm.cell(rssm.img_in(torch.cat([zero["stoch"], action[:, 0]], -1)), zero["deter"])
    torch.testing.assert_close(post["deter"][:, 0], deter)
    first = not_first.clone()
    first[:, 0] = True
    marked, _ = rssm.observe(embed, action, first, sample=False)
    zero_action = rssm.cell(rssm.img_in(torch.zeros(2, 4 + 2)), zero["deter"])
    torch.testing.assert_close(marked["deter"][:, 0], zero_action)


@pytest.mark.parametrize("flag", ["official_reversed_returns", "official_unclipped_actions"])
def test_dreamer_passes_the_official_flags_to_behaviour(flag: str) -> None:
    cfg = dataclasses.replace(dreamer.DreamerConfig(), deter=8, stoch=4, hidden=8, units=8, mlp_layers=2,
                              **{flag: True})  # fmt: skip
    beh = dreamer.Agent(cfg, (3,), 2).behaviour
    assert beh.official_order == (flag == "official_reversed_returns")
    assert beh.actor.clip == (flag != "official_unclipped_actions")


# ----------------------------------------------------------------------------- DMC stepping


def test_official_dmc_wrapper_steps_four_control_steps_and_keeps_twice_the_last_call() -> None:
    from rlkd.envs.dmc import make_dmc

    official = make_dmc("rlkd/DMC-CheetahRun-v0", size=16, action_repeat=2, official_wrapper=True,
                        time_limit=40)  # fmt: skip
    plain = make_dmc("rlkd/DMC-CheetahRun-v0", size=16, action_repeat=1, time_limit=40)
    official.reset(seed=3)
    plain.reset(seed=3)
    rng = np.random.default_rng(0)
    dt = official._env.control_timestep()
    for step in range(1, 11):
        action = rng.uniform(-1, 1, 6).astype(np.float32)
        _, reward, term, trunc, _ = official.step(action)
        control = [plain.step(action)[1] for _ in range(4)]  # the same physics, one control step each
        # 2 x the last inner call's two control rewards; the first two are dropped.
        assert reward == pytest.approx(2 * (control[2] + control[3]), rel=1e-6)
        assert official._env.physics.data.time == pytest.approx(4 * step * dt)
        assert not term and trunc == (step == 10)  # 40 control steps = 10 agent steps


def test_official_dmc_distractor_colours_materials_around_the_set_base() -> None:
    from rlkd.envs.dmc import OFFICIAL_BASE, make_dmc

    env = make_dmc("rlkd/DMC-CheetahRun-v0", size=16, official_wrapper=True, color_set="test")
    model = env._env.physics.model
    geoms = model.geom_rgba.copy()
    env.reset(seed=0)
    first = model.mat_rgba[:, :3].copy()
    env.step(np.zeros(6, np.float32))
    base = np.array(OFFICIAL_BASE["test"])
    for colours in (first, model.mat_rgba[:, :3]):
        assert (np.abs(colours - base) <= 0.2 + 1e-6).all()
    np.testing.assert_array_equal(model.geom_rgba, geoms)  # geoms untouched
    # Walk std 0.2 per control step, 4 control steps: colours move by ~0.2-0.4, not by 0.03.
    assert np.abs(model.mat_rgba[:, :3] - first).mean() > 0.08
    plain = make_dmc("rlkd/DMC-CheetahRun-v0", size=16, action_repeat=2)
    assert plain.max_steps == 500 and env.max_steps == 250
