"""Throughput benchmark: rlkd's PPO+RND vs a plain single-file PPO+RND on MontezumaRevenge-v5.

Issue 4, benchmark 2: on CPU, with envpool ``MontezumaRevenge-v5`` (no episodic life, clipped
rewards, sticky actions 0.25), 16 envs and 128 steps per rollout, rlkd's PPO+RND must reach at
least 1.5x the env steps/s of ``bench/reference_ppo_rnd_atari.py`` (a CleanRL-style baseline)
measured on the same machine in the same session.

Both run one after the other (never concurrently), with torch's default thread count, the same
number of env steps, and the first rollout+update iteration left out of the timing (warm-up):

* reference: ``python bench/reference_ppo_rnd_atari.py --iterations K`` (2 x 128 random steps of
  observation-normalization init, then K+1 iterations);
* rlkd: ``python -m rlkd.cli train --preset atari --total-steps (K+1)*2048 --int-init-steps 4096
  --int-update-proportion 0.25
  --log-interval 2048 --run-dir <tmp>``; ``charts/SPS`` (steps since the start of training over
  wall time) is logged after every iteration and read back from TensorBoard, which gives the end
  time of every iteration, hence the steps/s of iterations 2..K+1.

    python bench/bench_atari.py --iterations 8 [--repeats 2] [--out bench/results/atari_sps.md]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

HERE = Path(__file__).resolve().parent
BATCH = 16 * 128  # num_envs * num_steps of the atari preset


def run_reference(iterations: int, threads: int) -> float:
    script = str(HERE / "reference_ppo_rnd_atari.py")
    cmd = [sys.executable, script, "--iterations", str(iterations), "--json"]
    if threads:
        cmd += ["--torch-threads", str(threads)]
    print("$", " ".join(cmd), flush=True)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    print(out.strip().splitlines()[-2], flush=True)
    return float(json.loads(out.strip().splitlines()[-1])["sps"])


def steady_sps(run_dir: Path) -> tuple[float, int]:
    """Steps/s of every logged iteration after the first, from the cumulative ``charts/SPS``."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0})
    acc.Reload()
    events = sorted(acc.Scalars("charts/SPS"), key=lambda e: e.step)
    if len(events) < 2:
        raise SystemExit(f"error: {run_dir} logged charts/SPS {len(events)} times; need at least 2")
    # SPS_k = step_k / (t_k - t_start), so t_k - t_start = step_k / SPS_k.
    ends = [(e.step, e.step / e.value) for e in events]
    (s0, t0), (s1, t1) = ends[0], ends[-1]
    return (s1 - s0) / (t1 - t0), s1 - s0


def run_rlkd(iterations: int, threads: int) -> float:
    with tempfile.TemporaryDirectory(prefix="bench_atari_") as tmp:
        run_dir = Path(tmp) / "run"
        cmd = [
            sys.executable, "-m", "rlkd.cli", "train", "--preset", "atari",
            "--total-steps", str((iterations + 1) * BATCH), "--int-init-steps", "4096",
            # The reference trains its predictor on 0.25 of each minibatch (CleanRL's value); the
            # preset's RND rule would give 1.0 at 16 envs, four times the predictor's work.
            "--int-update-proportion", "0.25",
            "--log-interval", str(BATCH), "--run-dir", str(run_dir),
        ]  # fmt: skip
        if threads:
            cmd += ["--torch-threads", str(threads)]
        print("$", " ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        sps, steps = steady_sps(run_dir)
        print(f"rlkd PPO+RND: {sps:.1f} env steps/s over {steps} steps", flush=True)
        return sps


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--iterations", type=int, default=8, help="timed iterations of 2048 steps each")
    parser.add_argument("--repeats", type=int, default=1, help="alternate reference/rlkd this many times")
    parser.add_argument("--torch-threads", type=int, default=0, help="0 = torch's default, for both")
    parser.add_argument("--out", default="", help="also write the markdown table to this file")
    args = parser.parse_args()

    threads = args.torch_threads or torch.get_num_threads()
    load_start = os.getloadavg()
    ref, ours = [], []
    for _ in range(args.repeats):
        ref.append(run_reference(args.iterations, args.torch_threads))
        ours.append(run_rlkd(args.iterations, args.torch_threads))
    ref_sps, our_sps = sum(ref) / len(ref), sum(ours) / len(ours)

    def cell(values: list[float]) -> str:
        mean = sum(values) / len(values)
        return f"{mean:.1f}" + (f" ({', '.join(f'{v:.1f}' for v in values)})" if len(values) > 1 else "")

    load_end = os.getloadavg()
    lines = [
        f"MontezumaRevenge-v5, 16 envs x 128 steps, CPU ({os.cpu_count()} cores), torch threads {threads}, "
        f"{args.iterations} timed iterations ({args.iterations * BATCH} env steps) after 1 warm-up, "
        f"{args.repeats} repeat(s); 1-min load average before {load_start[0]:.2f}, "
        f"at the end {load_end[0]:.2f} (the bench itself keeps about 2 cores busy); "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}",
        "",
        "| implementation | env steps/s | ratio |",
        "|---|---:|---:|",
        f"| reference (bench/reference_ppo_rnd_atari.py) | {cell(ref)} | 1.00 |",
        f"| rlkd PPO+RND (`--preset atari`) | {cell(ours)} | {our_sps / ref_sps:.2f} |",
    ]
    text = "\n".join(lines)
    print("\n" + text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
