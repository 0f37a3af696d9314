"""Scaling out: PPO+RND on the sparse AGV warehouse with 1 process and with 2 (torch.distributed).

Same total envs (16: one process x 16, or two ranks x 8), same config otherwise (the default
PPOConfig: PPO+RND, 128 steps per env, 4 epochs x 4 minibatches of the job's batch), seeds 1-3, on
``rlkd/AGVWarehouse-ComplexStatic-v0``, each rank on one torch thread. One-process runs go two at a
time (a core each); a two-process run goes alone (a core per rank). Then the two-node command runs
as two "machines" on localhost (two torchrun launches meeting at a c10d rendezvous).

Analysis, fixed before the runs: the success rate at the end is each run's last logged
``charts/success_rate``; the two-process runs train "to the same quality" when their mean over
seeds is at least the one-process mean minus 0.1 (95% bootstrap intervals from ``rlkd report``).
Speed: each run's final ``charts/SPS`` (env steps of the whole job per second of training),
median over seeds, and the ratio of the medians.

    python bench/bench_distributed.py --out bench/results/distributed

Restarts where it stopped (finished runs are skipped).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ENV = "rlkd/AGVWarehouse-ComplexStatic-v0"


def train_cmd(run_dir: Path, seed: int, nproc: int, total: int, envs: int = 0) -> list[str]:
    """``rlkd train`` of PPO+RND on the scene: ``nproc`` processes of ``envs`` envs (16 in all by default)."""
    options = {"--env": ENV, "--intrinsic": "rnd", "--seed": seed, "--num-envs": envs or 16 // nproc,
               "--nproc": nproc, "--total-steps": total, "--torch-threads": 1, "--log-interval": 32768,
               "--checkpoint-interval": 500_000, "--run-dir": run_dir}  # fmt: skip
    return [sys.executable, "-m", "rlkd.cli", "train", *(str(x) for kv in options.items() for x in kv)]


def finished(run_dir: Path, total: int) -> bool:
    from rlkd.core.run import Run

    return (run_dir / "config.yaml").is_file() and any(
        s >= total for s in Run.open(run_dir).checkpoint_steps()
    )


def run_all(out: Path, seeds: list[int], total: int) -> None:
    """Every (nproc, seed) run; one-process runs two at a time, two-process runs alone."""
    jobs = [(nproc, seed) for seed in seeds for nproc in (1, 2)]
    running: list[tuple[subprocess.Popen, str, int]] = []
    start = time.time()
    while jobs or running:
        busy = sum(n for _, _, n in running)
        for nproc, seed in list(jobs):
            run_dir = out / "runs" / f"nproc{nproc}_seed{seed}"
            if finished(run_dir, total):
                jobs.remove((nproc, seed))
                continue
            if busy + nproc > 2:
                continue
            if run_dir.exists():  # an interrupted run: continue it
                cmd = [sys.executable, "-m", "rlkd.cli", "resume", str(run_dir)]
            else:
                cmd = train_cmd(run_dir, seed, nproc, total)
            log = open(out / f"nproc{nproc}_seed{seed}.log", "a")  # noqa: SIM115 - lives as long as the process
            running.append((subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), run_dir.name, nproc))
            jobs.remove((nproc, seed))
            busy += nproc
            print(f"[{time.time() - start:6.0f}s] started {run_dir.name}", flush=True)
        time.sleep(2)
        for item in list(running):
            proc, name, _ = item
            if proc.poll() is not None:
                running.remove(item)
                status = "done" if proc.returncode == 0 else f"FAILED ({proc.returncode})"
                print(f"[{time.time() - start:6.0f}s] {status} {name}", flush=True)


CASES = ((1, 16), (2, 8), (2, 16))
"""(processes, envs per process) of the speed phase: the same 16 envs in one or two processes,
and two processes of 16 (twice the envs, as a user who scales out would add them)."""


def speed(out: Path, pairs: int, total: int) -> str:
    """Whole training commands alternated (one process pinned to core 0, two on a core each),
    ``pairs`` rounds on a quiet machine; wall seconds and the job's final SPS of each case."""
    from rlkd.analysis import load_run

    walls: dict[tuple[int, int], list[float]] = {c: [] for c in CASES}
    sps: dict[tuple[int, int], list[float]] = {c: [] for c in CASES}
    run_dir = out / "speed_run"
    for _ in range(pairs):
        for nproc, envs in CASES:
            shutil.rmtree(run_dir, ignore_errors=True)
            cmd = train_cmd(run_dir, 1, nproc, total, envs)
            cmd = ["taskset", "-c", "0", *cmd] if nproc == 1 else cmd
            t0 = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            walls[nproc, envs].append(time.perf_counter() - t0)
            sps[nproc, envs].append(float(load_run(run_dir).scalars["charts/SPS"].values[-1]))
    shutil.rmtree(run_dir, ignore_errors=True)
    lines = [f"speed, {total} env steps per run, {pairs} alternated rounds (median, min-max):"]
    base = np.array(sps[CASES[0]])
    for case in CASES:
        w, v = walls[case], np.array(sps[case])
        ratio = v / base
        lines.append(
            f"  {case[0]} x {case[1]} envs: wall {np.median(w):.1f} s ({min(w):.1f}-{max(w):.1f}), "
            f"SPS {np.median(v):.0f} ({v.min():.0f}-{v.max():.0f}), "
            f"SPS / 1 x 16 per round {np.median(ratio):.2f}x ({ratio.min():.2f}-{ratio.max():.2f})"
        )
    return "\n".join(lines)


def two_nodes(out: Path) -> str:
    """The README's two-machine command, run as two launches on localhost; returns a summary line."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run_dir = out / "two_nodes_run"
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes",
        "2",
        "--nproc-per-node",
        "1",
        "--rdzv-backend",
        "c10d",
        "--rdzv-id",
        "bench",
        "--rdzv-endpoint",
        f"127.0.0.1:{port}",
        "-m",
        "rlkd.cli",
        "train",
        "--preset",
        "debug",
        "--intrinsic",
        "rnd",
        "--total-steps",
        "2048",
        "--run-dir",
        str(run_dir),
    ]
    nodes = [
        subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)
    ]
    codes = [n.wait(timeout=300) for n in nodes]
    events = len(list(run_dir.glob("events.out.tfevents.*")))
    from rlkd.core.run import Run

    steps = Run.open(run_dir).checkpoint_steps()
    shutil.rmtree(run_dir)
    return f"two nodes on localhost: exit codes {codes}, {events} event file, checkpoints at {steps}"


def summarise(out: Path, seeds: list[int]) -> str:
    from rlkd.analysis import load_run, report

    lines = [
        "| processes x envs | final success (per seed) | mean | SPS median (min-max) | wall min |",
        "|---|---|---|---|---|",
    ]
    means, sps_med = {}, {}
    for nproc in (1, 2):
        succ, sps, wall = [], [], []
        for seed in seeds:
            data = load_run(out / "runs" / f"nproc{nproc}_seed{seed}")
            succ.append(float(data.scalars["charts/success_rate"].values[-1]))
            sps.append(float(data.scalars["charts/SPS"].values[-1]))
            wall.append(data.wall_time_s / 60)
        means[nproc], sps_med[nproc] = float(np.mean(succ)), float(np.median(sps))
        lines.append(
            f"| {nproc} x {16 // nproc} | {', '.join(f'{s:.2f}' for s in succ)} | {means[nproc]:.2f} | "
            f"{sps_med[nproc]:.0f} ({min(sps):.0f}-{max(sps):.0f}) | {np.median(wall):.1f} |"
        )
    same = means[2] >= means[1] - 0.1
    lines.append(
        f"\nsame quality (2-process mean >= 1-process mean - 0.1): {same}; "
        f"SPS ratio 2/1: {sps_med[2] / sps_med[1]:.2f}x"
    )
    rep = report(
        [str(out / "runs")],
        out=out / "report",
        metrics=["charts/success_rate", "charts/SPS"],
        group_by=["nproc", "num_envs"],
    )
    return "\n".join(lines) + "\n\n" + rep.text


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--total-steps", type=int, default=3_000_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--out", default="bench/results/distributed")
    parser.add_argument("--speed-pairs", type=int, default=3, help="alternated 1- and 2-process speed runs")
    parser.add_argument("--speed-steps", type=int, default=500_000)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    run_all(out, args.seeds, args.total_steps)
    text = summarise(out, args.seeds) + "\n" + two_nodes(out) + "\n"
    if args.speed_pairs:
        text += speed(out, args.speed_pairs, args.speed_steps) + "\n"
    (out / "summary.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
