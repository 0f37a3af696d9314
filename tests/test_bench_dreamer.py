"""bench/bench_dreamer.py: runs are kept, resumed (also when --steps grew) or started over."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import bench_script


def _run_with_checkpoints(run: Path, *steps: int) -> None:
    (run / "checkpoints").mkdir(parents=True)
    for step in steps:
        (run / "checkpoints" / f"step_{step:012d}.pt").write_bytes(b"")


def test_a_run_is_finished_at_its_jobs_total_not_its_configs(tmp_path: Path) -> None:
    bench = bench_script("bench_dreamer")
    run = tmp_path / "dreamer__1"
    _run_with_checkpoints(run, 4000, 12000)
    argv = ["--seed", "1", "--total-steps", "12000", "--run-dir", str(run)]
    assert bench.finished(run, argv)
    argv[3] = "20000"  # --steps grew: the same run is no longer done
    assert not bench.finished(run, argv)


def test_a_run_with_a_checkpoint_resumes_and_one_without_starts_over(tmp_path: Path) -> None:
    bench = bench_script("bench_dreamer")
    kept, fresh = tmp_path / "dreamer__1", tmp_path / "dreamer__2"
    _run_with_checkpoints(kept, 12000)
    argv = ["--agent", "dreamer", "--total-steps", "20000", "--run-dir", str(kept)]
    assert bench.resume_or_train(kept, argv) == ["resume", str(kept), "--total-steps", "20000"]
    assert (kept / "checkpoints" / f"step_{12000:012d}.pt").exists()  # nothing deleted

    fresh.mkdir()
    (fresh / "config.yaml").write_text("total_steps: 20000\n")  # stopped before its first checkpoint
    argv = ["--agent", "dreamer", "--total-steps", "20000", "--run-dir", str(fresh)]
    assert bench.resume_or_train(fresh, argv) == ["train", *argv]
    assert not fresh.exists()  # cleared for the new run
