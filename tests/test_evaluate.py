"""Tests of ``rlkd eval`` (:mod:`rlkd.analysis.evaluate`) on real tiny training runs."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from torch.utils.tensorboard import SummaryWriter

from rlkd.analysis import load_run
from rlkd.analysis.evaluate import EVAL_SEED_OFFSET, best_checkpoint_step, evaluate, parse_checkpoint_spec
from rlkd.cli import main
from rlkd.errors import UserError


def _eval_scalars(run: Path) -> dict[str, list[tuple[int, float]]]:
    """Scalars of the ``<run>/eval`` log dir, read back with TensorBoard's EventAccumulator."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run / "eval"), size_guidance={"scalars": 0})
    acc.Reload()
    return {t: [(e.step, e.value) for e in acc.Scalars(t)] for t in acc.Tags()["scalars"]}


def _curves(run: Path) -> dict[str, tuple[list[int], list[float]]]:
    return {t: (c.steps.tolist(), c.values.tolist()) for t, c in load_run(run).scalars.items()}


@pytest.fixture(scope="module")
def cartpole_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real PPO debug run on envpool CartPole-v1 (checkpoints at 256 and 512)."""
    run = tmp_path_factory.mktemp("eval") / "cartpole"
    assert main(["train", "--preset", "debug", "--run-dir", str(run)]) == 0
    return run


@pytest.fixture(scope="module")
def agv_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real PPO debug run on the AGV warehouse (one checkpoint at 256)."""
    run = tmp_path_factory.mktemp("eval") / "agv"
    argv = ["train", "--env", "rlkd/AGVWarehouse-v0", "--preset", "debug", "--total-steps", "256"]
    assert main([*argv, "--run-dir", str(run)]) == 0
    return run


# ------------------------------------------------------------------------------------ metrics
def test_metrics_json_and_tensorboard(cartpole_run: Path) -> None:
    before = _curves(cartpole_run)
    result = evaluate(cartpole_run, episodes=5)

    assert result["checkpoint_step"] == 512
    assert result["episodes"] == 5
    assert "success_rate" not in result  # CartPole reports no success
    record = json.loads(Path(str(result["json"])).read_text())
    assert Path(str(result["json"])) == cartpole_run / "eval" / "eval_step_512.json"
    returns = np.array(record["per_episode"]["returns"])
    lengths = np.array(record["per_episode"]["lengths"])
    assert len(returns) == len(lengths) == 5
    # CartPole pays +1 per step, so each return is its length.
    np.testing.assert_allclose(returns, lengths)
    assert record["mean_return"] == pytest.approx(returns.mean())
    assert record["std_return"] == pytest.approx(returns.std())
    assert record["mean_length"] == pytest.approx(lengths.mean())
    assert record["seed"] == 1 + EVAL_SEED_OFFSET

    tb = _eval_scalars(cartpole_run)
    assert set(tb) == {"eval/mean_return", "eval/std_return", "eval/mean_length"}
    step, value = tb["eval/mean_return"][-1]
    assert step == 512 and value == pytest.approx(returns.mean())
    # The training curves are read back unchanged and no event file was added next to them.
    assert _curves(cartpole_run) == before
    assert len(list(cartpole_run.glob("events.out.tfevents.*"))) == 1


@pytest.mark.parametrize("episodes", [1, 3, 10, 13])
def test_counts_exactly_the_requested_episodes(cartpole_run: Path, episodes: int) -> None:
    result = evaluate(cartpole_run, checkpoint="256", episodes=episodes)
    record = json.loads(Path(str(result["json"])).read_text())
    assert result["episodes"] == episodes == len(record["per_episode"]["returns"])
    assert result["checkpoint_step"] == 256


def test_same_options_give_same_numbers(cartpole_run: Path) -> None:
    a = evaluate(cartpole_run, episodes=4)
    b = evaluate(cartpole_run, episodes=4)
    assert a["mean_return"] == b["mean_return"] and a["std_return"] == b["std_return"]


# ------------------------------------------------------------------------------------ best
def test_best_rule_on_known_curves(tmp_path: Path) -> None:
    writer = SummaryWriter(str(tmp_path))
    for step, ret in [(100, 5.0), (200, 9.0), (300, 7.0)]:
        writer.add_scalar("charts/episodic_return", ret, step)
    writer.close()
    # Checkpoint 50 precedes every logged point; 150 sees 5, 250 sees 9, 300 sees 7.
    assert best_checkpoint_step(tmp_path, [50, 150, 250, 300]) == 250

    writer = SummaryWriter(str(tmp_path))
    for step, rate in [(100, 0.5), (200, 0.2), (300, 0.5)]:
        writer.add_scalar("charts/success_rate", rate, step)
    writer.close()
    # Success rate ranks first: 150 and 300 tie at 0.5, and 300's return (7) beats 150's (5).
    assert best_checkpoint_step(tmp_path, [50, 150, 250, 300]) == 300
    # Equal on every tag: the later checkpoint wins.
    assert best_checkpoint_step(tmp_path, [120, 150]) == 150


def test_best_checkpoint_of_a_real_run(cartpole_run: Path) -> None:
    from tests.helpers import read_scalars

    result = evaluate(cartpole_run, checkpoint="best", episodes=2)
    # Independently of best_checkpoint_step: each checkpoint scores the last episodic return logged
    # at or before its step; the highest wins, the later step on ties.
    curve = read_scalars(cartpole_run)["charts/episodic_return"]
    score = {s: [v for step, v in curve if step <= s][-1] for s in (256, 512)}
    assert result["checkpoint_step"] == max(score, key=lambda s: (score[s], s))


def test_checkpoint_spec_parsing() -> None:
    assert parse_checkpoint_spec("latest") == "latest"
    assert parse_checkpoint_spec("BEST") == "best"
    assert parse_checkpoint_spec("512") == 512
    for bad in ("foo", "-3", "1.5"):
        with pytest.raises(UserError, match="--checkpoint"):
            parse_checkpoint_spec(bad)


# ------------------------------------------------------------------------------------ AGV + video
def test_agv_trajectories_png_and_success_rate(agv_run: Path) -> None:
    result = evaluate(agv_run, episodes=3)
    png = agv_run / "eval" / "trajectories_step_256.png"
    assert result["trajectories_png"] == str(png)
    with Image.open(png) as im:
        assert im.format == "PNG"
        assert im.size[0] > 300 and im.size[1] > 200
        im.verify()
    # Sparse AGV reward: an episode's return is 1 exactly when it reached the goal.
    assert result["success_rate"] == pytest.approx(result["mean_return"])
    assert "eval/success_rate" in _eval_scalars(agv_run)


def test_video_gif_holds_one_frame_per_step(agv_run: Path, tmp_path: Path) -> None:
    gif = tmp_path / "sub" / "episode.gif"
    result = evaluate(agv_run, episodes=2, video=gif)
    assert result["video"] == str(gif)
    length = json.loads(Path(str(result["json"])).read_text())["per_episode"]["lengths"][0]
    with Image.open(gif) as im:
        # Pillow merges identical consecutive frames (an AGV that stands still) and adds up their
        # durations, so count frames by total duration: AGV frames last 1/4 s each.
        total = 0
        for k in range(im.n_frames):
            im.seek(k)
            total += im.info["duration"]
        assert 1 < im.n_frames <= length
        assert im.size == (256, 256)
    assert total == 250 * length


def test_video_of_a_classic_control_env_on_a_fresh_install(cartpole_run: Path, tmp_path: Path) -> None:
    result = evaluate(cartpole_run, episodes=1, video=tmp_path / "cp.gif")
    with Image.open(result["video"]) as im:
        assert 1 < im.n_frames <= int(result["mean_length"]) and im.size == (600, 400)  # pygame's render


def test_video_of_an_env_that_cannot_render_is_a_user_error(tmp_path: Path) -> None:
    run_dir = tmp_path / "corridor"
    argv = ["train", "--preset", "debug", "--env", "tests.user_envs:Corridor-v0", "--run-dir", str(run_dir)]
    assert main(argv) == 0
    with pytest.raises(UserError, match=r"cannot record a video of .*Corridor-v0.*render"):
        evaluate(run_dir, episodes=1, video=tmp_path / "c.gif")


# ------------------------------------------------------------------------------------ bad input
def test_bad_input_is_one_line_user_error(
    cartpole_run: Path, agv_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Not a run folder.
    with pytest.raises(UserError, match="not a run folder"):
        evaluate(tmp_path, episodes=1)
    # A run folder without checkpoints (and without event files for `best`).
    empty = tmp_path / "empty"
    empty.mkdir()
    shutil.copy(cartpole_run / "config.yaml", empty / "config.yaml")
    with pytest.raises(UserError, match="no checkpoints"):
        evaluate(empty, episodes=1)
    with pytest.raises(UserError, match="no checkpoints"):
        evaluate(empty, checkpoint="best", episodes=1)
    # A checkpoint copied in from a run of another env.
    mixed = tmp_path / "mixed"
    (mixed / "checkpoints").mkdir(parents=True)
    shutil.copy(agv_run / "config.yaml", mixed / "config.yaml")
    shutil.copy(
        cartpole_run / "checkpoints" / "step_000000000256.pt", mixed / "checkpoints" / "step_000000000256.pt"
    )
    with pytest.raises(UserError, match="env_id='CartPole-v1'"):
        evaluate(mixed, episodes=1)
    with pytest.raises(UserError, match="no checkpoint at step 7"):
        evaluate(cartpole_run, checkpoint="7", episodes=1)
    with pytest.raises(UserError, match="--episodes"):
        evaluate(cartpole_run, episodes=0)
    with pytest.raises(UserError, match=r"\.gif"):
        evaluate(cartpole_run, episodes=1, video=tmp_path / "x.mp4")

    # Through the CLI: exit status 2 and one `error:` line.
    capsys.readouterr()
    assert main(["eval", str(cartpole_run), "--checkpoint", "nope"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: --checkpoint must be latest, best or a step")


def test_cli_prints_key_value_lines(cartpole_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["eval", str(cartpole_run), "--episodes", "2", "--deterministic"]) == 0
    lines = dict(line.split(": ", 1) for line in capsys.readouterr().out.strip().splitlines())
    assert lines["episodes"] == "2" and lines["deterministic"] == "true"
    assert float(lines["mean_return"]) > 0


def test_video_of_an_envpool_atari_run_plays_in_gymnasiums_ale(tmp_path: Path) -> None:
    run_dir = tmp_path / "pong"
    argv = ["train", "--preset", "atari", "--env", "Pong-v5", "--total-steps", "128", "--num-envs", "2",
            "--num-steps", "64", "--int-init-steps", "128", "--run-dir", str(run_dir)]  # fmt: skip
    assert main(argv) == 0
    result = evaluate(run_dir, episodes=1, video=tmp_path / "pong.gif")
    with Image.open(result["video"]) as im:
        assert im.size == (160, 210) and 1 < im.n_frames <= int(result["mean_length"])
    assert -21 <= float(result["mean_return"]) <= 21  # Pong's unclipped score range
