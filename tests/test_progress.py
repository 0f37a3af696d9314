"""The progress display: never past 100%, one throughput figure, a line for each warm-up."""

from __future__ import annotations

from rlkd.cli import main
from rlkd.core.run import BAR_FORMAT, Progress


def test_total_grows_to_the_real_end_instead_of_overshooting(capsys):
    progress = Progress(total=1000, initial=0, label="ppo X", interval_s=0.0)
    progress.update(1024, SPS=50.0)  # PPO ends its last whole rollout past the total
    progress.note("warm-up: 64 random-agent steps")
    err = capsys.readouterr().err.splitlines()
    assert err == ["[ppo X] step 1024/1024 SPS=50", "[ppo X] warm-up: 64 random-agent steps"]
    assert "rate" not in BAR_FORMAT  # the terminal bar shows the loop's SPS only


def test_warm_ups_are_announced(tmp_path, capsys):
    assert main(["train", "--preset", "debug", "--intrinsic", "rnd", "--run-dir", str(tmp_path / "p")]) == 0
    assert "warm-up: 64 random-agent steps for the rnd observation statistics" in capsys.readouterr().err
    argv = ["train", "--agent", "dreamer", "--preset", "debug", "--env", "Pendulum-v1", "--total-steps", "60",
            "--run-dir", str(tmp_path / "d")]  # fmt: skip
    assert main(argv) == 0
    assert "prefill: random actions until step 50, then 2 updates" in capsys.readouterr().err
