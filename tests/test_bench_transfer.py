"""bench/bench_transfer.py: the jobs it runs and its fixed reading of the probability of improvement."""

from __future__ import annotations

import argparse
from pathlib import Path

from tests.helpers import bench_script


def test_jobs_give_every_agent_the_same_budget_and_only_fine_tuners_the_teacher(tmp_path: Path) -> None:
    bench = bench_script("bench_transfer")
    args = argparse.Namespace(seeds=[1, 2], agents=["dreamer", "naive-ft", "diswm"], steps=12_000)
    jobs = bench.jobs(tmp_path, args, tmp_path / "pretrain")
    assert [run.name for run, _ in jobs] == ["dreamer__1", "naive-ft__1", "diswm__1", "dreamer__2",
                                             "naive-ft__2", "diswm__2"]  # fmt: skip
    for run, argv in jobs:
        assert "--preset" in argv and argv[argv.index("--preset") + 1] == "cpu-pixels"
        assert argv[argv.index("--total-steps") + 1] == "12000"
        assert argv[argv.index("--eta-decay-steps") + 1] == "6000"  # eta decays over the first half
        assert argv[argv.index("--env-kwargs") + 1] == "{color_set: test}"
        assert ("--pretrained" in argv) == (not run.name.startswith("dreamer"))
    naive = dict(jobs)[tmp_path / "naive-ft__1"]
    assert naive[naive.index("--finetune") + 1] == "naive"


def test_verdict_reads_the_interval_of_the_probability_of_improvement() -> None:
    bench = bench_script("bench_transfer")
    assert bench.verdict([0.9, 0.6, 1.0]) == "helps"
    assert bench.verdict([0.2, 0.0, 0.45]) == "hurts"
    assert bench.verdict([0.7, 0.4, 0.9]) == "not shown"
    assert bench.verdict([0.5, 0.5, 0.5]) == "not shown"  # exactly 0.5 is no improvement
