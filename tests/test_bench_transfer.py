"""bench/bench_transfer.py: the jobs it runs and its fixed reading of the probability of improvement."""

from __future__ import annotations

import argparse
from pathlib import Path

import yaml

from tests.helpers import bench_script


def test_jobs_follow_the_papers_protocol_at_one_budget(tmp_path: Path) -> None:
    bench = bench_script("bench_transfer")
    agents = ["dreamer", "naive-ft", "diswm", "diswm-eta0"]
    args = argparse.Namespace(seeds=[1, 2], agents=agents, steps=22_000)
    jobs = bench.jobs(tmp_path, args, tmp_path / "pretrain")
    assert [run.name for run, _ in jobs] == [f"{a}__{s}" for s in (1, 2) for a in agents]  # seeds first
    for run, argv in jobs:
        assert argv[argv.index("--preset") + 1] == "cpu-pixels"
        assert argv[argv.index("--total-steps") + 1] == "22000"
        # Official protocol: start in the source's colours, switch at half (dreamer.py l. 471-475).
        # Every stage draws the larger target the teacher's probe needed (PLAN addendum).
        kwargs = yaml.safe_load(argv[argv.index("--env-kwargs") + 1])
        assert kwargs == {"color_set": "train", "target_px": 14} and "--color-switch" in argv
        assert ("--pretrained" in argv) == (not run.name.startswith("dreamer"))
    argv = dict(jobs)[tmp_path / "diswm__1"]
    # The official strength: eta frozen at its build value, the KL summed over a 50-step window.
    assert "--official-frozen-eta" in argv and argv[argv.index("--distill-window") + 1] == "50"
    control = dict(jobs)[tmp_path / "diswm-eta0__1"]
    assert control[control.index("--eta-init") + 1] == "0" and "--distill-window" not in control
    # DreamerV2 alone runs without a teacher (no pretraining, no probe gate).
    assert not bench.needs_teacher(["dreamer"]) and bench.needs_teacher(["dreamer", "diswm-eta0"])
    alone = bench.jobs(tmp_path, argparse.Namespace(seeds=[1], agents=["dreamer"], steps=30_000), None)
    assert "--pretrained" not in alone[0][1]
    naive = dict(jobs)[tmp_path / "naive-ft__1"]
    assert naive[naive.index("--finetune") + 1] == "naive"


def test_verdict_reads_the_interval_of_the_probability_of_improvement() -> None:
    bench = bench_script("bench_transfer")
    assert bench.verdict([0.9, 0.6, 1.0]) == "helps"
    assert bench.verdict([0.2, 0.0, 0.45]) == "hurts"
    assert bench.verdict([0.7, 0.4, 0.9]) == "not shown"
    assert bench.verdict([0.5, 0.5, 0.5]) == "not shown"  # exactly 0.5 is no improvement


def test_analysis_reads_every_finished_run_and_stays_partial_until_all_twenty(tmp_path: Path) -> None:
    bench = bench_script("bench_transfer")
    steps = 1_000

    def finish(name: str, seed: int, step: int = steps) -> None:
        (tmp_path / f"{name}__{seed}" / "checkpoints").mkdir(parents=True, exist_ok=True)
        (tmp_path / f"{name}__{seed}" / "checkpoints" / f"step_{step:012d}.pt").touch()

    finish("dreamer", 1)
    finish("diswm", 1, step=steps // 2)  # unfinished: only a mid-run checkpoint
    finish("naive-ft", 99)  # not a seed of the plan
    runs, complete = bench.finished_runs(tmp_path, steps)
    assert runs == {"dreamer": [tmp_path / "dreamer__1"]} and not complete
    for name in bench.AGENTS:  # all but one run of the plan
        for seed in bench.PLAN_SEEDS:
            if (name, seed) != ("diswm-eta0", bench.PLAN_SEEDS[-1]):
                finish(name, seed)
    runs, complete = bench.finished_runs(tmp_path, steps)
    assert sum(map(len, runs.values())) == 4 * len(bench.PLAN_SEEDS) - 1 and not complete
    finish("diswm-eta0", bench.PLAN_SEEDS[-1])
    runs, complete = bench.finished_runs(tmp_path, steps)
    assert complete and list(runs) == list(bench.AGENTS)
    assert all(len(r) == len(bench.PLAN_SEEDS) == 5 for r in runs.values())


def test_reconstruction_sheet_shows_each_agent_before_the_switch_and_at_the_end(tmp_path: Path) -> None:
    import numpy as np
    import torch
    from PIL import Image
    from torch.utils.tensorboard import SummaryWriter

    bench = bench_script("bench_transfer")
    runs = {}
    for k, name in enumerate(["dreamer", "diswm"]):
        run = tmp_path / f"{name}__1"
        with SummaryWriter(str(run)) as writer:
            for step, level in ((10, 0.2), (20, 0.4), (30, 0.6), (40, 0.8)):  # the switch is at 20
                writer.add_images(bench.RECON_TAG, torch.full((2, 3, 4, 4), level + 0.1 * k), step)
        runs[name] = [run]
    bench.reconstructions(tmp_path, runs, steps=40)
    sheet = np.asarray(Image.open(tmp_path / "reconstructions.png"))
    grid_h, grid_w = 4, 2 * 4  # TensorBoard tiles the 2 images side by side, unpadded
    row_h = grid_h + 12  # a 12-pixel label above each grid
    assert sheet.shape[:2] == (2 * row_h, 2 * (grid_w + 8))
    for k in range(2):  # each row: the last grid at or before the switch (20), then the last (40)
        top = k * row_h + 12
        before = sheet[top : top + grid_h, :grid_w]
        after = sheet[top : top + grid_h, grid_w + 8 : 2 * grid_w + 8]
        assert np.allclose(before, round((0.4 + 0.1 * k) * 255), atol=1)
        assert np.allclose(after, round((0.8 + 0.1 * k) * 255), atol=1)
