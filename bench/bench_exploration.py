"""Exploration benchmark: PPO vs PPO+RND vs PPO+RDD on the sparse AGV complex-static scene.

Trains every (method, seed) pair through the real CLI, ``--parallel`` runs at a time, each on one
torch thread, then pools seeds with ``rlkd report`` (tables, learning-curve PNGs, CSVs).

    python bench/bench_exploration.py --total-steps 1500000 --seeds 1 2 3 --out bench/results/exploration

The success rate at the end of training is the mean of each run's last logged
``charts/success_rate`` (the fraction of episodes that ended at the goal since the previous log).

``--study rdd`` runs issue 37's RDD sensitivity study instead (bench/results/exploration_rdd/PLAN.md:
tasks, configurations, seeds and the decision rule), resumably: a run whose final checkpoint exists
is kept, one with a folder but no final checkpoint is continued with ``rlkd resume``:

    python bench/bench_exploration.py --study rdd --tasks chain --seeds 1 2 3 4 5
    python bench/bench_exploration.py --study rdd --tasks agv --seeds 1 2 3 4 5
    python bench/bench_exploration.py --study rdd --tasks chain --dry-run   # list runs and their state
"""

from __future__ import annotations

import argparse
import functools
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import NamedTuple

ENV = "rlkd/AGVWarehouse-ComplexStatic-v0"
METHODS = ("none", "rnd", "rdd")


class Task(NamedTuple):
    """A task of the RDD study: env id, env steps per run, options every run of it gets, and whether
    its env reports success (a goal reached)."""

    env_id: str
    total_steps: int
    options: tuple[str, ...] = ()
    has_success: bool = True


# PLAN.md, "Tasks": the lure chain as the user ran it (8 envs, 300k steps), and AGV complex-static
# at the 3M steps of the README's exploration table.
TASKS: dict[str, Task] = {
    "chain": Task("rlkd/LureChain-v0", 300_000, ("--num-envs", "8")),
    "agv": Task(ENV, 3_000_000),
    # Rule 7: the chosen RDD against RND on pixels (3 seeds); a checkpoint every 131,072 steps (~12
    # minutes of one core) so that a run cut by the end of a session loses little.
    "montezuma": Task("MontezumaRevenge-v5", 1_000_000,
                      ("--preset", "atari", "--checkpoint-interval", "131072"), has_success=False),
}

# PLAN.md, "Configurations": one factor at a time around the current default (d 64, sigma 1, m 1),
# plus PPO without a bonus and RND as references. Each value: (--intrinsic, extra options).
RDD_CONFIGS: dict[str, tuple[str, tuple[str, ...]]] = {
    "ppo": ("none", ()),
    "rnd": ("rnd", ()),
    "rdd_d64_s1_m1": ("rdd", ()),  # the current default
    "rdd_d32_s1_m1": ("rdd", ("--int-output-dim", "32")),
    "rdd_d128_s1_m1": ("rdd", ("--int-output-dim", "128")),
    "rdd_d256_s1_m1": ("rdd", ("--int-output-dim", "256")),
    "rdd_d64_s0.1_m1": ("rdd", ("--rdd-sigma", "0.1")),
    "rdd_d64_s0.5_m1": ("rdd", ("--rdd-sigma", "0.5")),
    "rdd_d64_s1_m0": ("rdd", ("--rdd-target-mean", "0")),
}


class Job(NamedTuple):
    """One CLI process to run: a name for the progress lines, its argv and its log file."""

    name: str
    cmd: list[str]
    log: Path


def train_command(
    env_id: str, intrinsic: str, seed: int, total: int, run_dir: Path, extra: list[str]
) -> list[str]:
    """argv of one ``rlkd train`` run on one torch thread."""
    return [
        sys.executable, "-m", "rlkd.cli", "train", "--env", env_id, "--intrinsic", intrinsic,
        "--seed", str(seed), "--total-steps", str(total), "--torch-threads", "1",
        "--run-dir", str(run_dir), "--log-interval", "32768",
        "--checkpoint-interval", str(min(500_000, total)), *extra,
    ]  # fmt: skip


def run_jobs(jobs: list[Job], parallel: int) -> None:
    """Run the jobs, ``parallel`` at a time, printing when each starts and ends."""
    running: list[tuple[subprocess.Popen, str]] = []
    start = time.time()
    jobs = list(jobs)
    while jobs or running:
        while jobs and len(running) < parallel:
            job = jobs.pop(0)
            job.log.parent.mkdir(parents=True, exist_ok=True)
            log = open(job.log, "a")  # noqa: SIM115 - lives as long as the process
            running.append((subprocess.Popen(job.cmd, stdout=log, stderr=subprocess.STDOUT), job.name))
            print(f"[{time.time() - start:6.0f}s] started {job.name}", flush=True)
        time.sleep(2)
        for proc, name in list(running):
            if proc.poll() is not None:
                running.remove((proc, name))
                status = "done" if proc.returncode == 0 else f"FAILED ({proc.returncode})"
                print(f"[{time.time() - start:6.0f}s] {status} {name}", flush=True)


def finished(run_dir: Path, total: int) -> bool:
    """Whether a run reached ``total`` env steps: it has a checkpoint at or past it (the last
    iteration rounds up to whole rollouts: 300,000 steps of 8 x 128 end at 300,032)."""
    steps = [int(p.stem.removeprefix("step_")) for p in (run_dir / "checkpoints").glob("step_*.pt")]
    return max(steps, default=-1) >= total


def run_state(run_dir: Path, total: int) -> str:
    """``done`` (its final checkpoint exists), ``resume`` (a folder from a started run) or ``new``."""
    if finished(run_dir, total):
        return "done"
    # A run folder is created whole (config.yaml first) or not at all, so config.yaml marks a run
    # that started; rlkd resume continues it from its newest checkpoint (or from step 0).
    return "resume" if (run_dir / "config.yaml").exists() else "new"


@functools.cache
def train_options() -> str:
    """``rlkd train --help`` of the installed rlkd: which options exist."""
    cmd = [sys.executable, "-m", "rlkd.cli", "train", "--help"]
    return subprocess.run(cmd, capture_output=True, text=True, check=True).stdout


def study_jobs(tasks: list[str], configs: list[str], seeds: list[int], out: Path,
               total_steps: int | None) -> tuple[list[Job], list[str]]:  # fmt: skip
    """The study's runs still to do, and a line per run saying its state."""
    jobs, lines = [], []
    for task_name in tasks:
        task = TASKS[task_name]
        total = total_steps or task.total_steps
        for seed in seeds:
            for name in configs:
                intrinsic, extra = RDD_CONFIGS[name]
                run_dir = out / "runs" / task_name / f"{name}__seed{seed}"
                state = run_state(run_dir, total)
                missing = [o for o in extra if o.startswith("--") and o not in train_options()]
                if missing and state != "done":
                    lines.append(f"skip {run_dir}: rlkd train has no {', '.join(missing)} (PLAN.md)")
                    continue
                lines.append(f"{state:6s} {run_dir}")
                log = out / f"{task_name}__{name}__seed{seed}.log"  # beside runs/: both git-ignored
                if state == "new":
                    cmd = train_command(task.env_id, intrinsic, seed, total, run_dir, [*task.options, *extra])
                    jobs.append(Job(f"{task_name}/{name}/{seed}", cmd, log))
                elif state == "resume":
                    cmd = [
                        sys.executable,
                        "-m",
                        "rlkd.cli",
                        "resume",
                        str(run_dir),
                        "--total-steps",
                        str(total),
                    ]
                    jobs.append(Job(f"{task_name}/{name}/{seed} (resumed)", cmd, log))
    return jobs, lines


def task_budgets(total_steps: int | None = None, run_now: Iterable[str] = ()) -> dict[str, int]:
    """Env steps per run of every task: its own budget, or ``total_steps`` for the tasks in
    ``run_now`` when given (``--total-steps`` applies only to the tasks of that invocation)."""
    return {t: total_steps if total_steps and t in run_now else task.total_steps for t, task in TASKS.items()}


def rdd_study(args: argparse.Namespace) -> None:
    """Run (or continue) the RDD study's runs, then report every task with runs."""
    out = Path(args.out or "bench/results/exploration_rdd")
    configs = args.configs or list(RDD_CONFIGS)
    unknown = sorted(set(configs) - set(RDD_CONFIGS))
    if unknown:
        raise SystemExit(f"unknown configuration(s) {unknown}; known: {', '.join(RDD_CONFIGS)}")
    jobs, lines = study_jobs(args.tasks, configs, args.seeds, out, args.total_steps)
    print("\n".join(lines), flush=True)
    if args.dry_run:
        return
    start = time.time()
    run_jobs(jobs, args.parallel)
    from rlkd.analysis import report

    group_by = ["env_id", "intrinsic", "int_output_dim", "rdd_sigma", "rdd_target_mean"]
    for task_name in args.tasks:
        runs_root = out / "runs" / task_name
        metrics = ["charts/success_rate"] * TASKS[task_name].has_success + ["charts/episodic_return"]
        if runs_root.is_dir() and any(runs_root.iterdir()):
            rep = report(
                [str(runs_root)], out=out / f"report_{task_name}", metrics=metrics, group_by=group_by
            )
            print(rep.text)
    from rdd_decision import decide

    # Every task with runs, not only those run now: the decision reads the chain and AGV together.
    decide(out, task_budgets(args.total_steps, args.tasks))
    print((out / "decision.md").read_text())
    print(f"total wall time: {time.time() - start:.0f}s")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--study",
        choices=("methods", "rdd"),
        default="methods",
        help="methods: PPO/RND/RDD on AGV (the original benchmark); rdd: issue 37's study",
    )
    parser.add_argument(
        "--total-steps",
        type=int,
        default=None,
        help="methods study: default 1500000; rdd study: each task's budget (PLAN.md)",
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument(
        "--tasks", nargs="+", default=["chain"], choices=sorted(TASKS), help="rdd study: which tasks"
    )
    parser.add_argument(
        "--configs",
        nargs="+",
        default=None,
        help="rdd study: configuration names (default: all of RDD_CONFIGS)",
    )
    parser.add_argument("--dry-run", action="store_true", help="rdd study: list the runs, start none")
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time (one torch thread each)")
    parser.add_argument(
        "--out",
        default=None,
        help="default bench/results/exploration (methods), bench/results/exploration_rdd (rdd)",
    )
    args = parser.parse_args()
    if args.study == "rdd":
        rdd_study(args)
        return
    out = Path(args.out or "bench/results/exploration")
    total = args.total_steps or 1_500_000
    runs_root = out / "runs"
    jobs = []
    for seed in args.seeds:
        for method in args.methods:
            run_dir = runs_root / f"{method}_seed{seed}"
            if (run_dir / "checkpoints").is_dir() and any((run_dir / "checkpoints").iterdir()):
                print(f"skip {run_dir} (exists)", flush=True)
                continue
            cmd = train_command(ENV, method, seed, total, run_dir, [])
            jobs.append(Job(f"{method}/{seed}", cmd, out / f"{method}_seed{seed}.log"))
    start = time.time()
    run_jobs(jobs, args.parallel)
    from rlkd.analysis import report

    metrics = ["charts/success_rate", "charts/episodic_return"]
    rep = report([str(runs_root)], out=out / "report", metrics=metrics, group_by=["env_id", "intrinsic"])
    print(rep.text)
    print(f"total wall time: {time.time() - start:.0f}s")


if __name__ == "__main__":
    main()
