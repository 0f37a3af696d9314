"""``rlkd monitor``: conformal thresholds, windows, the alarm rules, and the commands end to end."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

import rlkd
from rlkd.cli import main
from rlkd.errors import UserError
from rlkd.monitor import Monitor, MonitorConfig
from rlkd.monitor.conformal import conformal_threshold, first_alarm, min_calibration_episodes, windowed
from rlkd.monitor.traces import Episode, raw_input
from tests.test_reliability import error_line


# ------------------------------------------------------------------------------------ numerics
def test_conformal_threshold_is_the_rank_ceil_n_plus_1_times_1_minus_alpha() -> None:
    scores = np.array([5, 1, 4, 2, 3, 9, 7, 8, 6, 10], dtype=float)  # n = 10
    assert conformal_threshold(scores, 0.2) == 9  # ceil(11 * 0.8) = 9th smallest
    assert conformal_threshold(scores, 0.1) == 10  # ceil(9.9) = 10th
    assert conformal_threshold(scores, 0.5) == 6  # ceil(5.5) = 6th
    with pytest.raises(UserError, match="needs at least 19 calibration episodes, got 10"):
        conformal_threshold(scores, 0.05)  # ceil(10.45) = 11 > 10
    assert [min_calibration_episodes(a) for a in (0.05, 0.1, 0.2, 0.5)] == [19, 9, 4, 1]
    with pytest.raises(UserError, match="--alpha must be between 0 and 1"):
        min_calibration_episodes(0.0)


def test_a_new_exchangeable_score_exceeds_the_threshold_with_probability_alpha() -> None:
    # Continuous scores: P(new > threshold) = (n + 1 - k) / (n + 1) = 1 / 20 exactly at n = 19.
    rng = np.random.default_rng(0)
    trials = 20_000
    cal, new = rng.exponential(size=(trials, 19)), rng.exponential(size=trials)
    thresholds = np.sort(cal, axis=1)[:, 18]
    assert conformal_threshold(cal[0], 0.05) == thresholds[0]
    assert abs(np.mean(new > thresholds) - 0.05) < 0.006


def test_window_is_a_trailing_mean_that_starts_with_what_there_is() -> None:
    x = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    np.testing.assert_allclose(windowed(x, 2), [1.0, 1.5, 2.5, 3.5, 4.5])
    np.testing.assert_allclose(windowed(x, 1), x)
    np.testing.assert_allclose(windowed(x, 10), [1.0, 1.5, 2.0, 2.5, 3.0])
    assert first_alarm(windowed(x, 2) > 2.5) == 3 and first_alarm(x > 9) is None


def _episode(uncertainty: list[float], value: list[float]) -> Episode:
    t = len(uncertainty)
    return Episode(obs=np.zeros((t, 3), np.float32), features=np.zeros((t, 4), np.float32),
                   uncertainty=np.array(uncertainty, np.float32), value=np.array(value, np.float32),
                   mode=np.zeros((t, 1), np.float32), success=False)  # fmt: skip


def test_both_scores_rule_alarms_only_where_both_exceed() -> None:
    mon = Monitor(MonitorConfig(window=2), feature_dim=4, obs_dim=3, action_dim=1, state_uncertainty=True)
    episode = _episode([0, 0, 1, 1, 0], [5, 5, 5, 5, -5])  # windowed: [0, 0, .5, 1, .5]; -value: [.., 0]
    mon.thresholds = {"novelty": -1.0, "uncertainty": 0.6, "obs_novelty": math.inf, "value": -1.0,
                      "jitter": math.inf}  # fmt: skip
    steps = mon.alarm_steps(episode)
    assert steps["uncertainty"] == 3 and steps["fiper"] == 3  # novelty is always above its -1
    assert steps["value"] == 4 and steps["obs_novelty"] is None  # -value windowed: [-5 ... -5, 0]
    mon.thresholds["novelty"] = math.inf  # uncertainty alone is no longer enough
    assert mon.alarm_steps(episode)["fiper"] is None and mon.alarm_steps(episode)["uncertainty"] == 3


def test_raw_input_pools_images_to_16_per_side_and_flattens_vectors() -> None:
    img = np.zeros((2, 64, 64, 3), np.uint8)
    img[:, :4, :4, 0] = 255  # one 4x4 block: one pooled pixel at full red
    x = raw_input(img)
    assert x.shape == (2, 16 * 16 * 3) and x.max() == 1.0 and np.count_nonzero(x[0]) == 1
    assert raw_input(np.ones((3, 5), np.float64)).shape == (3, 5)


# ------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("monitor") / "ppo"
    assert main(["train", "--preset", "debug", "--run-dir", str(run_dir), "--torch-threads", "1"]) == 0
    argv = ["monitor", "calibrate", str(run_dir), "--episodes", "12", "--alpha", "0.2", "--updates", "30"]
    assert main(argv) == 0
    return run_dir


def test_calibrate_writes_the_monitor_folder_with_finite_thresholds(ppo_run: Path) -> None:
    folder = ppo_run / "monitor"
    assert sorted(p.name for p in folder.iterdir()) == ["calibration.json", "config.yaml", "monitor.pt"]
    record = json.loads((folder / "calibration.json").read_text())
    # CartPole reports no success: every episode is kept, half fit the scorers, half set thresholds.
    assert record["successful"] == 12 and record["fit_episodes"] == 6 and record["calibration_episodes"] == 6
    thresholds = {name: s["threshold"] for name, s in record["scores"].items()}
    assert set(thresholds) == {"novelty", "uncertainty", "obs_novelty", "value", "jitter"}
    assert all(math.isfinite(t) for t in thresholds.values())
    # At alpha 0.2 and 6 episodes the threshold is the ceil(7 * 0.8) = 6th smallest: the maximum.
    assert all(s["threshold"] == s["quantiles"]["100"] for s in record["scores"].values())
    assert not list(ppo_run.glob(".monitor-*"))  # no temporary folder left


def test_eval_and_the_per_step_scorer_agree(ppo_run: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["monitor", "eval", str(ppo_run), "--episodes", "4", "--label", "own"]) == 0
    out = capsys.readouterr().out
    assert "fiper" in out and "random" in out
    record = json.loads((ppo_run / "monitor" / "eval" / "own.json").read_text())
    assert record["episodes"] == 4 and record["success_rate"] is None
    rules = {"fiper", "fiper_jitter", "novelty", "uncertainty", "obs_novelty", "value", "jitter", "random"}
    assert set(record["rules"]) == rules
    assert (ppo_run / "monitor" / "eval" / "own.png").stat().st_size > 0
    assert list((ppo_run / "monitor" / "eval").glob("events.out.tfevents.*"))

    # The per-step scorer of rlkd.load(run).monitor() keeps a window per env: it gives the windowed
    # scores the offline monitor computes from the same steps' raw scores.
    import gymnasium

    scorer = rlkd.load(ppo_run).monitor()
    env = gymnasium.make("CartPole-v1")
    obs, _ = env.reset(seed=0)
    online, steps = [], []
    for t in range(7):
        first = np.array([t == 0])
        steps.append((scorer.policy.inspect(obs[None], first, True), raw_input(obs[None])))
        actions, reading = scorer.predict(obs[None], episode_start=first)
        assert reading.alarm.shape == (1,) and actions.shape == (1,)
        online.append({k: v[0] for k, v in reading.scores.items()})
        obs = env.step(int(actions[0]))[0]
    cat = lambda f: np.concatenate([f(s, o) for s, o in steps])  # noqa: E731
    mode = cat(lambda s, o: s.mode)
    jitter = np.r_[0.0, np.square(np.diff(mode, axis=0)).mean(-1)]  # by hand: no change at step 0
    raw = scorer.monitor.raw_scores(cat(lambda s, o: s.features), cat(lambda s, o: o),
                                    cat(lambda s, o: s.uncertainty), cat(lambda s, o: s.value),
                                    jitter)  # fmt: skip
    for name, values in raw.items():
        expected = windowed(values, scorer.monitor.cfg.window)
        assert np.isfinite(expected).all()
        np.testing.assert_allclose([o[name] for o in online], expected, rtol=1e-5)


def test_eval_with_monitor_flag_reports_the_rules(ppo_run: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["eval", str(ppo_run), "--episodes", "2", "--monitor", "--deterministic"]) == 0
    out = capsys.readouterr().out
    assert "mean_return" in out and "fiper" in out


def test_dreamer_runs_are_monitored_with_the_actor_std(tmp_path: Path) -> None:
    from rlkd.monitor.workflow import calibrate

    run_dir = tmp_path / "d"
    argv = ["train", "--agent", "dreamer", "--preset", "debug", "--env", "Pendulum-v1", "--total-steps", "60",
            "--run-dir", str(run_dir), "--env-backend", "gymnasium", "--torch-threads", "1"]  # fmt: skip
    assert main(argv) == 0
    record = calibrate(run_dir, MonitorConfig(alpha=0.5, updates=20), episodes=2)
    state = torch.load(run_dir / "monitor" / "monitor.pt", weights_only=True)
    assert state["ensemble"] is None and state["dims"]["state_uncertainty"]  # the actor's own std
    assert record["scores"]["uncertainty"]["threshold"] > 0  # std = 2 sigmoid(.) + min_std > 0
    assert all(math.isfinite(s["threshold"]) for s in record["scores"].values())


# ------------------------------------------------------------------------------------ bad input
def test_too_few_calibration_episodes_for_alpha_writes_nothing(ppo_run: Path, capsys, tmp_path: Path) -> None:
    run = tmp_path / "copy"
    shutil.copytree(ppo_run, run)
    shutil.rmtree(run / "monitor")
    argv = ["monitor", "calibrate", str(run), "--episodes", "12", "--alpha", "0.05", "--updates", "5"]
    err = error_line(capsys, argv)
    assert "needs 19" in err and "--episodes" in err
    assert not (run / "monitor").exists() and not list(run.glob(".monitor-*"))


def test_env_with_other_spaces_is_refused_before_any_episode(ppo_run: Path, capsys) -> None:
    before = (ppo_run / "monitor" / "monitor.pt").read_bytes()
    err = error_line(capsys, ["monitor", "calibrate", str(ppo_run), "--env", "Pendulum-v1", "--updates", "5"])
    assert "Pendulum-v1's observation space" in err and "differs from the run's" in err
    assert (ppo_run / "monitor" / "monitor.pt").read_bytes() == before


def test_monitor_folder_of_another_run_is_refused(ppo_run: Path, capsys, tmp_path: Path) -> None:
    other = tmp_path / "other"
    argv = ["train", "--preset", "debug", "--run-dir", str(other), "--seed", "5", "--torch-threads", "1"]
    assert main(argv) == 0
    shutil.copytree(ppo_run / "monitor", other / "monitor", ignore=shutil.ignore_patterns("eval"))
    err = error_line(capsys, ["monitor", "eval", str(other), "--episodes", "2"])
    assert "calibrated for another policy" in err and "rlkd monitor calibrate" in err
    assert not (other / "monitor" / "eval").exists()
