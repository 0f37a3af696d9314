"""Learning benchmark of a PPO preset over seeds, against a random policy on the same env.

    python bench/bench_preset.py --preset cartpole --seeds 1-5 --target 475
    python bench/bench_preset.py --preset mujoco --seeds 1-3 --out bench/results/presets
    python bench/bench_preset.py --preset mujoco --analyse RUNS_ROOT     # runs already trained

The analysis is fixed here, before any run: for each seed, the last logged ``charts/episodic_return``
(the mean return of the episodes that ended since the previous log) and the mean return of 20
evaluation episodes of the final policy (``rlkd eval``, sampled actions); with ``--target``, *steps
to target* is the first logged step whose return reaches it (a seed that never gets there does not
reach it within the budget), reported as the median over the seeds that reach it with a 95%
percentile-bootstrap interval. The baseline is a uniformly random policy, 20 episodes, on the
preset's env. Runs train through the CLI, ``--jobs`` at a time, each on one torch thread.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from scipy import stats


def steps_to_target(run: Path, target: float) -> int | None:
    from rlkd.analysis import load_run

    curve = load_run(run).scalars["charts/episodic_return"]
    hits = np.flatnonzero(curve.values >= target)
    return int(curve.steps[hits[0]]) if len(hits) else None


def random_baseline(preset: str, episodes: int = 20) -> float:
    """Mean return of a uniformly random policy on the preset's env (its kwargs and backend)."""
    from rlkd.agents.ppo import PRESETS, PPOConfig
    from rlkd.envs import make_vec

    cfg = PPOConfig(**PRESETS[preset])
    envs = make_vec(cfg.env_id, 1, 12345, cfg.env_backend, **cfg.env_kwargs)
    envs.reset(seed=12345)
    envs.action_space.seed(12345)
    returns: list[float] = []
    while len(returns) < episodes:
        *_, info = envs.step(envs.action_space.sample())
        if "_episode" in info and info["_episode"][0]:
            returns.append(float(info["episode"]["r"][0]))
    envs.close()
    return float(np.mean(returns))


def main() -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--preset", required=True)
    parser.add_argument("--seeds", default="1-5")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--target", type=float, default=None)
    parser.add_argument("--analyse", default=None, help="a runs root trained before: analyse only")
    parser.add_argument("--out", default="bench/results/presets")
    args = parser.parse_args()
    cli = [sys.executable, "-m", "rlkd.cli"]
    runs_root = Path(args.analyse) if args.analyse else Path(args.out) / "runs" / args.preset  # gitignored
    if not args.analyse:
        train = ["train", "--preset", args.preset, "--seed", args.seeds, "--jobs", str(args.jobs)]
        subprocess.run([*cli, *train, "--torch-threads", "1", "--runs-root", str(runs_root)], check=True)
    rows = []
    for run in sorted(p for p in runs_root.iterdir() if (p / "config.yaml").is_file()):
        from rlkd.analysis import load_run

        evaluation = subprocess.run([*cli, "eval", str(run), "--episodes", "20"], check=True,
                                    capture_output=True, text=True).stdout  # fmt: skip
        line = next(x for x in evaluation.splitlines() if x.startswith("mean_return:"))
        row = {"seed": int(run.name.split("__")[2]),
               "final_logged_return": float(load_run(run).scalars["charts/episodic_return"].values[-1]),
               "eval_mean_return": float(line.split(":")[1])}  # fmt: skip
        if args.target is not None:
            row["steps_to_target"] = steps_to_target(run, args.target)
        rows.append(row)
    summary: dict = {"preset": args.preset, "seeds": len(rows),
                     "random_policy_return": random_baseline(args.preset), "per_seed": rows}  # fmt: skip
    if args.target is not None:
        reached = [r["steps_to_target"] for r in rows if r["steps_to_target"] is not None]
        summary |= {"target": args.target, "reached": len(reached)}
        if len(reached) > 1:
            ci = stats.bootstrap((np.array(reached, float),), np.median, method="percentile",
                                 rng=np.random.default_rng(0)).confidence_interval  # fmt: skip
            summary |= {"median_steps_to_target": float(np.median(reached)), "ci95": [ci.low, ci.high]}
    text = json.dumps(summary, indent=1, default=float)
    print(text)
    Path(args.out).mkdir(parents=True, exist_ok=True)
    (Path(args.out) / f"{args.preset}.json").write_text(text + "\n")


if __name__ == "__main__":
    main()
