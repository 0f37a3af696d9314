"""What rlkd guarantees: one writer per run, NaN/inf caught and named, file-system errors one line,
resumes that change nothing unless they can start, and checkpoints that never hold NaN/inf."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from rlkd.cli import main
from rlkd.core.guard import UpdateGuard, check_finite, nonfinite_paths
from rlkd.core.paths import PROBE_PREFIX
from rlkd.core.run import Run
from rlkd.errors import UserError
from tests.helpers import read_scalars

ROOT = Path(__file__).resolve().parents[1]
FAULTY = "tests.user_envs:Faulty-v0"


def error_line(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: "), err
    assert sum(line.startswith("error:") for line in err) == 1 and "Traceback" not in "\n".join(err)
    return err[-1]


def _rlkd(log: Path, *argv: str) -> subprocess.Popen:
    """Start ``rlkd argv`` writing stdout/stderr to ``log``.out/.err (files: a pipe left unread fills)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "rlkd.cli", *argv]
    with open(f"{log}.out", "w") as out, open(f"{log}.err", "w") as err:  # the child keeps its copies
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err, text=True)
    proc.log = log  # type: ignore[attr-defined]
    return proc


def _finish(proc: subprocess.Popen, timeout: float = 60.0) -> tuple[int, str, str]:
    """Wait for ``proc``; return its exit status, stdout and stderr."""
    proc.wait(timeout=timeout)
    log = proc.log  # type: ignore[attr-defined]
    return proc.returncode, Path(f"{log}.out").read_text(), Path(f"{log}.err").read_text()


def _wait_for(predicate, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.1)


# ------------------------------------------------------------------------------------ one writer
def test_one_writer_per_run_folder_with_real_processes(tmp_path):
    run_dir = tmp_path / "run"
    long = ("train", "--preset", "debug", "--run-dir", str(run_dir), "--total-steps", "10000000",
            "--checkpoint-interval", "512")  # fmt: skip
    # Two trains started together on one folder: exactly one runs, the other names it.
    a, b = _rlkd(tmp_path / "a", *long), _rlkd(tmp_path / "b", *long)
    _wait_for(lambda: a.poll() is not None or b.poll() is not None)
    loser, winner = (a, b) if a.poll() is not None else (b, a)
    code, _, err = _finish(loser)
    assert code == 2 and len(err.strip().splitlines()) == 1, err
    assert re.search(rf"is being written by process {winner.pid} \(rlkd train\)", err)
    try:
        _wait_for(lambda: len(list((run_dir / "checkpoints").glob("step_*.pt"))) >= 2)
        # A resume while it trains is refused, and rewrites nothing.
        config = (run_dir / "config.yaml").read_bytes()
        code, _, err = _finish(_rlkd(tmp_path / "r", "resume", str(run_dir), "--total-steps", "20000000"))
        assert code == 2 and f"process {winner.pid}" in err and "Traceback" not in err
        assert (run_dir / "config.yaml").read_bytes() == config
        # Readers need no lock.
        code, out, err = _finish(_rlkd(tmp_path / "e", "eval", str(run_dir), "--episodes", "2"))
        assert code == 0 and "mean_return" in out, err
    finally:
        winner.send_signal(signal.SIGKILL)  # the OS releases the lock of a killed writer
        winner.wait()
    assert len(list(run_dir.glob("events.out.tfevents.*"))) == 1
    last = Run.open(run_dir).checkpoint_steps()[-1]
    assert main(["resume", str(run_dir), "--total-steps", str(last + 512)]) == 0
    assert Run.open(run_dir).checkpoint_steps()[-1] == last + 512


# ------------------------------------------------------------------------------------ resume
def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (the lock file included) with its bytes."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_refused_train_leaves_the_folder_byte_identical(capsys, tmp_path):
    other = tmp_path / "notes"
    other.mkdir()
    (other / "todo.txt").write_text("mine\n")
    run_dir = tmp_path / "run"
    assert main(["train", "--preset", "debug", "--run-dir", str(run_dir)]) == 0
    (run_dir / ".lock").write_text("process 1 (rlkd train)\n")
    for folder in (other, run_dir):
        before = snapshot(folder)
        err = error_line(capsys, ["train", "--preset", "debug", "--run-dir", str(folder)])
        assert "already exists and is not empty" in err
        assert snapshot(folder) == before  # no new or rewritten .lock
    assert not (other / ".lock").exists()
    err = error_line(capsys, ["resume", str(run_dir)])  # already at its total steps
    assert "already reached step" in err and snapshot(run_dir) == before


def test_another_starts_write_probe_does_not_make_a_folder_a_run(tmp_path):
    # Two trains on one new folder: the later one's write probe (made before it waits for the lock)
    # can be in the folder when the first looks; the first must still start (CI saw it refuse).
    from rlkd.agents.ppo import PPOConfig

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / f"{PROBE_PREFIX}abc123").touch()
    run = Run.create(PPOConfig(run_dir=str(run_dir)), "ppo")
    assert (run_dir / "config.yaml").exists()
    run.release()
    (run_dir / "notes.txt").touch()  # anything else still marks a folder in use
    with pytest.raises(UserError, match="already exists and is not empty"):
        Run.create(PPOConfig(run_dir=str(run_dir)), "ppo")


def test_resume_that_cannot_start_changes_nothing(capsys, tmp_path):
    run_dir = tmp_path / "run"
    assert main(["train", "--preset", "debug", "--run-dir", str(run_dir)]) == 0
    config = run_dir / "config.yaml"
    original = config.read_text()
    config.write_text(original.replace("hidden_size: 16", "hidden_size: 32"))

    (run_dir / ".lock").write_text("process 1 (rlkd train)\n")  # what the last holder left
    before = snapshot(run_dir)
    err = error_line(capsys, ["resume", str(run_dir), "--total-steps", "1024"])
    assert "does not fit the networks config.yaml describes" in err and "size mismatch" in err
    assert snapshot(run_dir) == before  # config.yaml as edited, .lock as left, no new file
    config.write_text(original)
    assert main(["resume", str(run_dir), "--total-steps", "1024"]) == 0
    assert "total_steps: 1024" in config.read_text()  # written once the resume started


def test_run_stopped_before_its_first_checkpoint_resumes_from_step_zero(capsys, tmp_path):
    run_dir = tmp_path / "run"
    assert main(["train", "--preset", "debug", "--run-dir", str(run_dir)]) == 0
    for ckpt in (run_dir / "checkpoints").iterdir():  # as if killed before the first checkpoint
        ckpt.unlink()
    capsys.readouterr()
    assert main(["resume", str(run_dir)]) == 0
    assert "from step 0: it stopped before its first checkpoint" in capsys.readouterr().err
    assert Run.open(run_dir).checkpoint_steps() == [256, 512]
    steps = [s for s, _ in read_scalars(run_dir)["charts/SPS"]]
    assert steps == [128, 256, 384, 512]  # the first attempt's points are superseded, not duplicated


def test_failed_start_prints_no_run_folder_and_leaves_none(capsys, tmp_path):
    assert main(["train", "--preset", "debug", "--env", FAULTY, "--runs-root", str(tmp_path),
                 "--env-kwargs", "{fault: nan_reset}"]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "run folder:" not in err and "non-finite observation (nan) in env 0 at step 0" in err
    assert not any(tmp_path.iterdir())


# ------------------------------------------------------------------------------------ non-finite
@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        (
            "nan_obs",
            r"env tests.user_envs:Faulty-v0 gave a non-finite observation \(nan\) in env 0 at step 400",
        ),
        (
            "inf_reward",
            r"env tests.user_envs:Faulty-v0 gave a non-finite reward \(inf\) in env 0 at step 400",
        ),
    ],
)
def test_nonfinite_env_data_stops_and_keeps_the_good_checkpoint(capsys, tmp_path, fault, expected):
    run_dir = tmp_path / "run"
    argv = ["train", "--preset", "debug", "--env", FAULTY, "--run-dir", str(run_dir),
            "--env-kwargs", f"{{fault: {fault}, fault_step: 100}}"]  # fmt: skip
    assert re.search(expected, error_line(capsys, argv))
    run = Run.open(run_dir)
    assert run.checkpoint_steps() == [256]  # written before the fault, kept
    assert nonfinite_paths(run.load_checkpoint()["state"]) == []


def test_a_nonfinite_last_observation_of_an_episode_is_caught_too(capsys, tmp_path):
    argv = ["train", "--preset", "debug", "--env", FAULTY, "--run-dir", str(tmp_path / "r"),
            "--env-kwargs", "{fault: nan_final, fault_step: 100}"]  # fmt: skip
    assert "gave a non-finite final_observation (nan) in env 0 at step 400" in error_line(capsys, argv)


def test_nonfinite_env_data_stops_a_dreamer_too(capsys, tmp_path):
    kwargs = "{fault: inf_reward, fault_step: 120, continuous: true}"
    argv = ["train", "--agent", "dreamer", "--preset", "debug", "--env", FAULTY, "--run-dir",
            str(tmp_path / "r"), "--env-kwargs", kwargs]  # fmt: skip
    err = error_line(capsys, argv)
    assert "env tests.user_envs:Faulty-v0 gave a non-finite reward (inf) in env 0 at step 120" in err
    assert Run.open(tmp_path / "r").checkpoint_steps() == [100]


def test_nonfinite_loss_stops_by_default_and_is_skipped_on_request(capsys, tmp_path):
    # A finite reward of 3e38 squares to inf in the float32 value loss.
    common = [
        "train",
        "--preset",
        "debug",
        "--env",
        FAULTY,
        "--env-kwargs",
        "{fault: huge_reward, fault_step: 100}",
    ]
    err = error_line(capsys, [*common, "--run-dir", str(tmp_path / "stop")])
    assert re.search(r"non-finite .*value loss.* at step 512; no update was made", err)
    assert "--on-nonfinite skip" in err
    assert Run.open(tmp_path / "stop").checkpoint_steps() == [256]

    assert main([*common, "--run-dir", str(tmp_path / "skip"), "--on-nonfinite", "skip"]) == 0
    skipped = read_scalars(tmp_path / "skip")["charts/skipped_updates"]
    assert skipped[0][1] == 0 and skipped[-1][1] > 0  # counted from the update that met the reward
    run = Run.open(tmp_path / "skip")
    assert run.checkpoint_steps() == [256, 512]
    state = run.load_checkpoint()["state"]
    assert nonfinite_paths(state) == [] and state["guard"]["skipped"] == skipped[-1][1]


def test_diverged_networks_are_named(capsys, tmp_path):
    err = error_line(capsys, ["train", "--preset", "debug", "--intrinsic", "rnd", "--learning-rate", "1e8",
                              "--run-dir", str(tmp_path / "rnd")])  # fmt: skip
    assert re.search(r"non-finite predictor (loss, predictor )?gradient at step 128", err)
    err = error_line(capsys, ["train", "--agent", "dreamer", "--preset", "debug", "--actor-lr", "1e30",
                              "--on-nonfinite", "skip", "--run-dir", str(tmp_path / "dreamer")])  # fmt: skip
    assert "the policy gave a non-finite action (nan)" in err and "lower the learning rate" in err


def test_update_guard_and_check_finite_by_hand():
    one, nan, inf = torch.tensor(1.0), torch.tensor(float("nan")), torch.tensor(float("inf"))
    guard = UpdateGuard("stop")
    guard.step = 77
    assert guard.ok({"policy": one}, {"agent": one})
    with pytest.raises(UserError, match=r"non-finite value loss, critic gradient at step 77"):
        guard.ok({"policy": one, "value": nan}, {"agent": one, "critic": inf})
    skipping = UpdateGuard("skip")
    assert not skipping.ok({"policy": inf}, {}) and not skipping.ok({}, {"agent": nan})
    assert skipping.ok({"policy": one}, {}) and skipping.skipped == 2

    check_finite("env E", 5, observation=np.full((2, 64, 64, 3), 255, np.uint8))  # integers: finite
    obs = np.zeros((3, 2), np.float32)
    obs[2, 1] = -np.inf
    with pytest.raises(UserError, match=r"env E gave a non-finite observation \(-inf\) in env 2 at step 5"):
        check_finite("env E", 5, observation=obs, reward=np.zeros(3))


def test_checkpoint_with_nonfinite_values_is_never_written(tmp_path):
    from rlkd.agents.ppo import PPOConfig

    run = Run.create(PPOConfig(run_dir=str(tmp_path / "run")), "ppo")
    good = {"net": {"w": torch.ones(3)}, "step": 1}
    run.save_checkpoint(10, good, keep=3)
    bad = {"net": {"w": torch.tensor([1.0, float("nan")]), "b": torch.zeros(2)}, "opt": [torch.ones(1)]}
    with pytest.raises(
        UserError, match=r"refusing .* step 20: NaN/inf in net/w; the last good one \(step 10\)"
    ):
        run.save_checkpoint(20, bad, keep=3)
    assert run.checkpoint_steps() == [10] and not list(run.checkpoint_dir.glob(".*tmp*"))
    run.release()


# ------------------------------------------------------------------------------------ file system
def test_file_system_problems_are_one_line_and_checked_before_work(capsys, tmp_path, monkeypatch):
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    assert "is a file, not a folder" in error_line(
        capsys, ["train", "--preset", "debug", "--run-dir", str(a_file)]
    )
    err = error_line(capsys, ["train", "--preset", "debug", "--runs-root", str(a_file / "runs")])
    assert "cannot be created or written (Not a directory" in err

    run_dir = tmp_path / "run"
    assert main(["train", "--preset", "debug", "--run-dir", str(run_dir)]) == 0
    capsys.readouterr()
    assert "--out" in error_line(capsys, ["report", str(run_dir), "--out", str(a_file / "report")])
    # Video paths are checked before any evaluation episode runs (nothing written to eval/).
    assert "--video's folder" in error_line(capsys, ["eval", str(run_dir), "--video", str(a_file / "ep.gif")])
    (tmp_path / "folder.gif").mkdir()
    assert "is a folder" in error_line(
        capsys, ["eval", str(run_dir), "--video", str(tmp_path / "folder.gif")]
    )
    assert not (run_dir / "eval").exists()

    # Permissions cannot be taken from root (which runs CI), so the refusal is simulated at the probe.
    def refuse(folder: Path) -> None:
        raise PermissionError(13, "Permission denied", str(folder))

    monkeypatch.setattr("rlkd.core.paths._probe", refuse)
    err = error_line(capsys, ["train", "--preset", "debug", "--runs-root", str(tmp_path / "ro")])
    assert "cannot be created or written (Permission denied:" in err


def test_os_errors_during_a_command_are_one_line(capsys, tmp_path, monkeypatch):
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device", "checkpoints/step_000000000256.pt")

    monkeypatch.setattr("rlkd.core.run.atomic_torch_save", full_disk)
    err = error_line(capsys, ["train", "--preset", "debug", "--run-dir", str(tmp_path / "run")])
    assert err == "error: No space left on device: checkpoints/step_000000000256.pt"


def test_spaces_in_messages_are_one_line():
    import gymnasium as gym

    from rlkd.errors import describe_space

    box = gym.spaces.Box(np.arange(40, dtype=np.float32) - 1, np.arange(40, dtype=np.float32) + 5)
    assert "\n" in str(box)  # what a message would have shown
    assert describe_space(box) == "Box(shape=(40,), float32, bounds [-1.0, 44.0])"
    nested = gym.spaces.Dict({"lidar": box, "goal": gym.spaces.Tuple((gym.spaces.Discrete(3),))})
    assert describe_space(nested) == (
        "Dict('goal': Tuple(Discrete(3)), 'lidar': Box(shape=(40,), float32, bounds [-1.0, 44.0]))"
    )


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_diverged_policy_is_named_not_sampled(env_id):
    """Distributions are built unvalidated for speed; NaN/inf parameters are still caught by hand."""
    import gymnasium as gym
    from rlkd.agents.ppo import PPO, PPOConfig, act_checked

    env = gym.make(env_id)
    cfg = PPOConfig(env_id=env_id, intrinsic="none", num_envs=2)
    algo = PPO(cfg, env.observation_space, env.action_space)
    obs = torch.zeros(2, *env.observation_space.shape)
    action, logp, _, _ = act_checked(algo.agent, obs, 0)
    assert action.shape[0] == 2 and torch.isfinite(logp).all()
    with torch.no_grad():
        algo.agent.actor.bias.fill_(float("nan"))
    with pytest.raises(UserError, match="the policy gave non-finite action probabilities at step 7"):
        act_checked(algo.agent, obs, 7)
