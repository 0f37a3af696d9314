"""bench/bench_exploration.py --study rdd: finished runs are kept, started ones resumed, others started."""

from __future__ import annotations

from pathlib import Path

from tests.helpers import bench_script


def test_runs_are_kept_resumed_or_started_by_their_folder(tmp_path: Path) -> None:
    bench = bench_script("bench_exploration")
    total = bench.TASKS["chain"].total_steps
    done = tmp_path / "runs" / "chain" / "rnd__seed1"
    (done / "checkpoints").mkdir(parents=True)
    (done / "config.yaml").write_text("{}")
    (done / "checkpoints" / f"step_{total:012d}.pt").write_bytes(b"")
    started = tmp_path / "runs" / "chain" / "rdd_d64_s1_m1__seed1"
    (started / "checkpoints").mkdir(parents=True)
    (started / "config.yaml").write_text("{}")
    (started / "checkpoints" / f"step_{total // 2:012d}.pt").write_bytes(b"")
    configs = ["rnd", "rdd_d64_s1_m1", "rdd_d128_s1_m1"]
    jobs, lines = bench.study_jobs(["chain"], configs, [1], tmp_path, None)
    assert [line.split()[0] for line in lines] == ["done", "resume", "new"]
    assert len(jobs) == 2
    assert jobs[0].cmd[3:5] == ["resume", str(started)]
    new = jobs[1].cmd
    assert new[new.index("--env") + 1] == "rlkd/LureChain-v0"
    assert new[new.index("--int-output-dim") + 1] == "128" and new[new.index("--num-envs") + 1] == "8"
    assert new[new.index("--total-steps") + 1] == str(total)


def test_a_cell_whose_option_rlkd_lacks_is_skipped_not_started(tmp_path: Path) -> None:
    bench = bench_script("bench_exploration")
    bench.train_options.cache_clear()
    jobs, lines = bench.study_jobs(["chain"], ["rdd_d64_s1_m0"], [1], tmp_path, 1000)
    if "--rdd-target-mean" in bench.train_options():
        assert len(jobs) == 1 and "--rdd-target-mean" in jobs[0].cmd
    else:
        assert jobs == [] and "no --rdd-target-mean" in lines[0]


def test_total_steps_overrides_only_the_tasks_of_that_invocation() -> None:
    bench = bench_script("bench_exploration")
    own = {name: task.total_steps for name, task in bench.TASKS.items()}
    assert bench.task_budgets() == own == bench.task_budgets(None, ["chain"])
    assert bench.task_budgets(1_000, ["agv"]) == own | {"agv": 1_000}  # the chain keeps its 300k
