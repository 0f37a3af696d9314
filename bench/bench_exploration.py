"""Exploration benchmark: PPO vs PPO+RND vs PPO+RDD on the sparse AGV complex-static scene.

Trains every (method, seed) pair through the real CLI, ``--parallel`` runs at a time, each on one
torch thread, then pools seeds with ``rlkd report`` (tables, learning-curve PNGs, CSVs).

    python bench/bench_exploration.py --total-steps 1500000 --seeds 1 2 3 --out bench/results/exploration

The success rate at the end of training is the mean of each run's last logged
``charts/success_rate`` (the fraction of episodes that ended at the goal since the previous log).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ENV = "rlkd/AGVWarehouse-ComplexStatic-v0"
METHODS = ("none", "rnd", "rdd")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--total-steps", type=int, default=1_500_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time (one torch thread each)")
    parser.add_argument("--out", default="bench/results/exploration")
    args = parser.parse_args()

    out = Path(args.out)
    runs_root = out / "runs"
    jobs = [(m, s) for s in args.seeds for m in args.methods]
    running: list[tuple[subprocess.Popen, str]] = []
    start = time.time()
    while jobs or running:
        while jobs and len(running) < args.parallel:
            method, seed = jobs.pop(0)
            run_dir = runs_root / f"{method}_seed{seed}"
            if (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir()):
                print(f"skip {run_dir} (exists)", flush=True)
                continue
            cmd = [
                sys.executable,
                "-m",
                "rlkd.cli",
                "train",
                "--env",
                ENV,
                "--intrinsic",
                method,
                "--seed",
                str(seed),
                "--total-steps",
                str(args.total_steps),
                "--torch-threads",
                "1",
                "--run-dir",
                str(run_dir),
                "--log-interval",
                "32768",
                "--checkpoint-interval",
                "500000",
            ]
            out.mkdir(parents=True, exist_ok=True)
            log = open(out / f"{method}_seed{seed}.log", "w")  # noqa: SIM115 - lives as long as the process
            running.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), f"{method}/{seed}"))
            print(f"[{time.time() - start:6.0f}s] started {method} seed {seed}", flush=True)
        time.sleep(2)
        for proc, name in list(running):
            if proc.poll() is not None:
                running.remove((proc, name))
                status = "done" if proc.returncode == 0 else f"FAILED ({proc.returncode})"
                print(f"[{time.time() - start:6.0f}s] {status} {name}", flush=True)

    from rlkd.analysis import report

    metrics = ["charts/success_rate", "charts/episodic_return"]
    rep = report([str(runs_root)], out=out / "report", metrics=metrics, group_by=["env_id", "intrinsic"])
    print(rep.text)
    print(f"total wall time: {time.time() - start:.0f}s")


if __name__ == "__main__":
    main()
