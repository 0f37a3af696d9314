"""``rlkd monitor``'s threshold-free measures (AUROC, AP, early warning) and its candidate options."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from scipy.stats import mannwhitneyu

import rlkd
from rlkd.cli import _print_monitor, main
from rlkd.monitor import Monitor, MonitorConfig
from rlkd.monitor.evaluation import judge, rank_scores, summarise
from rlkd.monitor.monitor import episode_statistic, scored_window
from rlkd.monitor.ranking import auroc, average_precision, bootstrap, early_points
from rlkd.monitor.traces import Episode, raw_input
from tests.test_reliability import error_line


# ------------------------------------------------------------------------------------ numerics
def test_auroc_is_mann_whitney_u_over_pairs_with_ties_counting_half() -> None:
    scores = np.array([0.9, 0.8, 0.8, 0.3, 0.1])
    failed = np.array([True, False, True, False, True])
    # Pairs (positive, negative): 0.9 beats 0.8 and 0.3; 0.8 ties 0.8 (1/2), beats 0.3; 0.1 beats none.
    assert auroc(scores, failed) == pytest.approx(3.5 / 6)
    u = mannwhitneyu(scores[failed], scores[~failed]).statistic
    assert auroc(scores, failed) == pytest.approx(u / 6)
    assert auroc(np.array([1.0, 2.0, 3.0]), np.array([False, True, True])) == 1.0
    assert auroc(np.array([3.0, 2.0, 1.0]), np.array([False, True, True])) == 0.0
    assert auroc(np.ones(4), np.array([True, False, True, False])) == 0.5
    assert math.isnan(auroc(np.arange(3.0), np.zeros(3, bool)))  # no positives: undefined


def test_average_precision_is_the_step_wise_sum_with_ties_entering_together() -> None:
    scores = np.array([0.9, 0.8, 0.8, 0.3, 0.1])
    failed = np.array([True, False, True, False, True])
    # Thresholds 0.9, 0.8, 0.3, 0.1: (recall, precision) = (1/3, 1), (2/3, 2/3), (2/3, 1/2), (1, 3/5).
    assert average_precision(scores, failed) == pytest.approx(1 / 3 + 1 / 3 * 2 / 3 + 1 / 3 * 3 / 5)
    # A tie of both positives with nothing above but a negative: one step, precision 2/3 (taking
    # the tied points one by one would give (1/2 + 2/3) / 2 or (1 + 2/3) / 2 depending on order).
    tied = average_precision(np.array([3.0, 2.0, 2.0, 1.0]), np.array([False, True, True, False]))
    assert tied == pytest.approx(2 / 3)
    assert average_precision(np.array([2.0, 1.0]), np.array([True, False])) == 1.0


def test_bootstrap_intervals_are_those_of_the_episodes_drawn() -> None:
    rng = np.random.default_rng(3)
    episode = np.repeat(np.arange(6), 4)  # 6 episodes of 4 points: whole episodes are drawn
    positive = episode % 2 == 0
    scores = rng.normal(size=24) + positive
    out = bootstrap(scores, positive, episode, 6, resamples=50, seed=7)
    assert out["auroc"]["value"] == auroc(scores, positive)
    draws = np.random.default_rng(7).integers(6, size=(50, 6))  # the same draws, by hand
    by_hand = []
    for d in draws:
        idx = np.concatenate([np.flatnonzero(episode == e) for e in d])
        by_hand.append(auroc(scores[idx], positive[idx]))
    by_hand = np.array(by_hand)
    expected = np.percentile(by_hand[np.isfinite(by_hand)], [2.5, 97.5])
    np.testing.assert_allclose(out["auroc"]["ci95"], expected)


def test_early_points_take_a_failures_last_horizon_steps_and_every_success_step() -> None:
    scores, labels, index = early_points([np.arange(5.0), np.array([7.0, 8.0, 9.0])], [True, False], 2)
    np.testing.assert_array_equal(scores, [3, 4, 7, 8, 9])  # steps 0-2 of the failure: left out
    np.testing.assert_array_equal(labels, [True, True, False, False, False])
    np.testing.assert_array_equal(index, [0, 0, 1, 1, 1])


def test_windows_can_skip_the_first_steps_and_wait_for_full_windows() -> None:
    x = np.array([9.0, 1.0, 2.0, 3.0, 4.0])
    np.testing.assert_allclose(scored_window(x, 2), [9, 5, 1.5, 2.5, 3.5])
    np.testing.assert_allclose(scored_window(x, 2, skip=1), [-np.inf, 1, 1.5, 2.5, 3.5])
    np.testing.assert_allclose(scored_window(x, 2, skip=1, full=True), [-np.inf, -np.inf, 1.5, 2.5, 3.5])
    w = scored_window(x, 2, skip=1, full=True)
    assert episode_statistic(w, "max") == 3.5 and episode_statistic(w, "mean") == pytest.approx(2.5)
    assert episode_statistic(scored_window(x, 2, skip=9), "max") == -np.inf


# ------------------------------------------------------------------------------------ eval's record
def _episode(value: list[float], success: bool) -> Episode:
    t = len(value)
    return Episode(obs=np.zeros((t, 3), np.float32), features=np.zeros((t, 4), np.float32),
                   uncertainty=np.zeros(t, np.float32), value=np.array(value, np.float32),
                   mode=np.zeros((t, 1), np.float32), success=success)  # fmt: skip


def test_eval_ranks_every_score_and_gives_chance_at_each_rules_rate(capsys: pytest.CaptureFixture) -> None:
    cfg = MonitorConfig(window=1, statistic="max")
    mon = Monitor(cfg, feature_dim=4, obs_dim=3, action_dim=1, state_uncertainty=True)
    mon.thresholds = {name: 0.5 for name in ("novelty", "uncertainty", "obs_novelty", "jitter")}
    mon.thresholds["value"] = -1.5  # -value > -1.5: value < 1.5
    # Failures end with a falling value (the score -value rises in their last steps); successes don't.
    episodes = [_episode([3, 3, 2, 1], False), _episode([3, 3, 3, 0], False), _episode([3, 2, 3], True),
                _episode([3, 3, 3, 3, 2], True)]  # fmt: skip
    windowed = [mon.scores(e) for e in episodes]
    rows = judge(mon, episodes, np.random.default_rng(0), windowed)
    assert [r["alarm"]["value"] for r in rows] == [3, 3, None, None]
    assert [r["statistic"]["value"] for r in rows] == [-1, 0, -2, -2]
    # The default statistic, the mean of -value over each episode's steps (window 1).
    mean = Monitor(MonitorConfig(window=1), feature_dim=4, obs_dim=3, action_dim=1, state_uncertainty=True)
    assert [mean.statistics(w)["value"] for w in windowed] == pytest.approx([-2.25, -2.25, -8 / 3, -2.8])
    ranking = rank_scores(rows, windowed, horizon=2)
    assert ranking is not None and ranking["value"]["auroc"]["value"] == 1.0  # max -value: failures above
    # Early, horizon 2: positives -2, -1 | -3, 0; negatives -3, -2, -3 | -3, -3, -3, -3, -2.
    pos, neg = np.array([-2, -1, -3, 0]), np.array([-3, -2, -3, -3, -3, -3, -3, -2])
    u = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    assert ranking["value"]["early_auroc"]["value"] == pytest.approx(u / 32)
    assert ranking["chance"] == {"auroc": 0.5, "ap": 0.5, "early_ap": 4 / 12}
    lo, hi = ranking["value"]["early_auroc"]["ci95"]
    assert lo <= ranking["value"]["early_auroc"]["value"] <= hi
    summary = summarise(rows)
    # The value rule alarms on half the episodes: chance there is TPR = FPR = 0.5, accuracy 0.5.
    assert summary["value"]["chance"] == {"tpr": 0.5, "fpr": 0.5, "accuracy": 0.5}
    assert summary["value"]["accuracy"]["value"] == 1.0
    record = {"env_id": "x", "env_kwargs": {}, "episodes": 4, "success_rate": 0.5, "alpha": 0.05,
              "rules": summary, "scores": ranking, "horizon": 2, "run": "r", "label": "l"}  # fmt: skip
    _print_monitor(json.loads(json.dumps(record)))
    out = capsys.readouterr().out
    assert "early AUROC" in out and "random at its rate: accuracy 0.50" in out
    assert any(line.startswith("value") and "1.00 [1.00,1.00]" in line for line in out.splitlines())


# ------------------------------------------------------------------------------------ candidate options
@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("ranking") / "ppo"
    assert main(["train", "--preset", "debug", "--run-dir", str(run_dir), "--torch-threads", "1"]) == 0
    return run_dir


def test_views_of_a_ppo_policy_are_its_normalised_input_and_hidden_layers(ppo_run: Path) -> None:
    from rlkd.monitor.views import step_views

    policy = _policy(ppo_run)
    obs = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    step, views = step_views(policy, obs, np.ones(3, bool), True)
    assert set(views) == {"policy", "obs", "layer1", "layer2", "all"}
    np.testing.assert_allclose(views["layer2"], step.features, rtol=1e-6)  # the heads read the last layer
    np.testing.assert_allclose(views["obs"], policy.prep(obs, policy.device, update=False).numpy())
    assert views["all"].shape == (3, 4 + 2 * step.features.shape[1])
    assert np.abs(views["layer1"]).max() <= 1.0  # a tanh layer's output


def _policy(run_dir: Path) -> Any:
    from rlkd.analysis.evaluate import load_run_policy

    return load_run_policy(run_dir, "latest", "cpu")[3]


def test_calibrate_with_candidate_options_saves_them_as_plain_values(ppo_run: Path, capsys) -> None:
    argv = ["monitor", "calibrate", str(ppo_run), "--episodes", "12", "--alpha", "0.2", "--updates", "20",
            "--features", "all", "--skip", "2", "--full-windows", "--statistic", "max",
            "--window", "3"]  # fmt: skip
    assert main(argv) == 0
    state = torch.load(ppo_run / "monitor" / "monitor.pt", weights_only=True)
    assert state["config"]["features"] == "all" and state["config"]["skip"] == 2
    assert state["config"]["full_windows"] is True and state["config"]["statistic"] == "max"
    assert state["dims"]["feature_dim"] == 4 + 2 * state["dims"]["ensemble_dim"]

    # The per-step scorer reads the same view, skips the same steps and waits for full windows.
    import gymnasium

    scorer = rlkd.load(ppo_run).monitor()
    env = gymnasium.make("CartPole-v1")
    obs, _ = env.reset(seed=1)
    online, trace = [], []
    from rlkd.monitor.views import step_views

    for t in range(8):
        first = np.array([t == 0])
        step, views = step_views(scorer.policy, obs[None], first, True)
        trace.append((step, views, raw_input(obs[None])))
        actions, reading = scorer.predict(obs[None], episode_start=first)
        online.append({k: v[0] for k, v in reading.scores.items()})
        obs = env.step(int(actions[0]))[0]
    cat = lambda f: np.concatenate([f(s, v) for s, v, _ in trace])  # noqa: E731
    layers = ("obs", "layer1", "layer2")
    episode = Episode(obs=np.concatenate([o for _, _, o in trace]), features=cat(lambda s, v: s.features),
                      uncertainty=cat(lambda s, v: s.uncertainty), value=cat(lambda s, v: s.value),
                      mode=cat(lambda s, v: s.mode),
                      views={k: cat(lambda s, v, k=k: v[k]) for k in layers})  # fmt: skip
    offline = scorer.monitor.scores(episode)
    assert np.isneginf(offline["novelty"][:4]).all() and np.isfinite(offline["novelty"][4:]).all()
    for name in ("novelty", "obs_novelty", "value"):
        np.testing.assert_allclose([o[name] for o in online], offline[name], rtol=1e-5)


def test_unknown_view_and_bad_options_are_one_error_line(ppo_run: Path, capsys) -> None:
    err = error_line(capsys, ["monitor", "calibrate", str(ppo_run), "--features", "deter", "--updates", "5"])
    assert "--features deter is not a view of this policy" in err and "layer1" in err
    err = error_line(capsys, ["monitor", "calibrate", str(ppo_run), "--skip", "-1"])
    assert "--skip must be 0 or more" in err
    err = error_line(capsys, ["monitor", "eval", str(ppo_run), "--horizon", "0"])
    assert "--horizon must be at least 1" in err


def test_paired_auroc_difference_cancels_on_the_same_resamples() -> None:
    from rlkd.monitor.ranking import auroc_difference

    rng = np.random.default_rng(1)
    positive = np.arange(40) % 3 == 0
    a, b = rng.normal(size=40) + positive, rng.normal(size=40)
    ids = np.arange(40)
    same = auroc_difference(a, a, positive, ids, 40, resamples=100)
    assert same == {"value": 0.0, "ci95": [0.0, 0.0]}  # paired: identical scores differ by 0 on every draw
    diff = auroc_difference(a, b, positive, ids, 40, resamples=100)
    assert diff["value"] == pytest.approx(auroc(a, positive) - auroc(b, positive))
    assert diff["ci95"][0] <= diff["value"] <= diff["ci95"][1]
