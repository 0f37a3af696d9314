"""Learning benchmark: the `cartpole` preset (rl-zoo3's tuned PPO recipe) on CartPole-v1, 5 seeds.

    python bench/bench_cartpole.py [--seeds 1-5] [--jobs 2] [--out bench/results/cartpole]

The analysis is fixed here, before any run: for each seed, *steps to 475* is the first logged step
(logs every 1,024 env steps) at which ``charts/episodic_return`` (the mean return of the episodes
that ended since the previous log) is at least 475; a seed that never gets there counts as not
reaching it within the 100k-step budget. Reported: how many seeds reach 475 within 100k steps, the
median steps to 475 with a 95% percentile-bootstrap interval over seeds, and the final policy's mean
return over 20 evaluation episodes (``rlkd eval``, sampled actions) per seed.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy import stats

TARGET = 475.0


def steps_to_target(run: Path) -> int | None:
    from rlkd.analysis import load_run

    curve = load_run(run).scalars["charts/episodic_return"]
    hits = np.flatnonzero(curve.values >= TARGET)
    return int(curve.steps[hits[0]]) if len(hits) else None


def main() -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--seeds", default="1-5")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--out", default="bench/results/cartpole")
    args = parser.parse_args()
    out = Path(args.out)
    runs_root = out / "runs"
    cli = [sys.executable, "-m", "rlkd.cli"]
    subprocess.run([*cli, "train", "--preset", "cartpole", "--seed", args.seeds, "--jobs", str(args.jobs),
                    "--torch-threads", "1", "--runs-root", str(runs_root)], check=True)  # fmt: skip
    rows = []
    for run in sorted(runs_root.iterdir()):
        evaluation = subprocess.run([*cli, "eval", str(run), "--episodes", "20"], check=True,
                                    capture_output=True, text=True).stdout  # fmt: skip
        mean_return = float(next(line for line in evaluation.splitlines() if line.startswith("mean_return:"))
                            .split(":")[1])  # fmt: skip
        seed = int(run.name.split("__")[2])
        rows.append({"seed": seed, "steps_to_475": steps_to_target(run), "eval_mean_return": mean_return})
    reached = [r["steps_to_475"] for r in rows if r["steps_to_475"] is not None]
    summary: dict = {"seeds": len(rows), "reached_475": len(reached), "per_seed": rows}
    if len(reached) > 1:
        ci = stats.bootstrap((np.array(reached, float),), np.median, method="percentile",
                             rng=np.random.default_rng(0)).confidence_interval  # fmt: skip
        summary |= {"median_steps_to_475": float(np.median(reached)), "ci95": [float(ci.low), float(ci.high)]}
    text = json.dumps(summary, indent=1)
    print(text)
    out.mkdir(parents=True, exist_ok=True)
    (out / "summary.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
