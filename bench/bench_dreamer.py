"""DreamerV2 learning on CPU: Pendulum-v1 from state (against PPO) and point reach from 64x64 pixels.

Usage::

    python bench/bench_dreamer.py pendulum [--seeds 1 2 3] [--steps 30000] [--ppo-steps 300000]
    python bench/bench_dreamer.py reach    [--seeds 1 2 3] [--steps 22000]
        [--out runs/dreamer_bench] [--parallel 2] [--episodes 50] [--env ID] [--train-args "..."]

Trains ``rlkd train --agent dreamer --preset cpu`` (``cpu-pixels`` for reach; one torch thread,
one core each, ``--parallel`` runs at a time pinned to cores 0, 1, ..., or sharing every core when
there are more runs than cores), and for ``pendulum``
also rlkd PPO with rl-zoo3's tuned Pendulum-v1 hyperparameters (4 envs x 1024 steps, gamma 0.9,
lr 1e-3, 10 epochs of 64-sample minibatches; without gSDE, which rlkd's PPO lacks). Runs already
finished in ``--out`` are kept; unfinished ones (or finished ones when ``--steps`` grew) resume from
their last checkpoint.

Analysis, fixed before the runs were looked at:

* learning curve: ``charts/episodic_return`` of the training episodes; at every logged step the
  mean over the trailing 5000 env steps; "steps to threshold" is the first step where that
  trailing mean reaches the threshold (pendulum: -300, the issue's; reach: 80% of the way from
  the random to the greedy controller's return);
* final evaluation: ``--episodes`` episodes of the last checkpoint with the policy's mode
  (``rlkd eval --deterministic``): mean return and, for reach, success rate;
* across seeds: mean, 95% Student-t interval and every seed's value; the reference controllers
  (random, and pendulum: energy pumping + PD; reach: target-blind "go to the centre" and greedy)
  over the same number of episodes on seeds 10000+.

Writes ``summary.json``, ``summary.md`` and ``curves.png`` in ``--out/<task>/``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

TASKS = {
    "pendulum": {"env": "Pendulum-v1", "threshold": -300.0, "preset": "cpu", "steps": 30_000},
    "reach": {"env": "rlkd/PointReach-Pixels-v1", "threshold": None, "preset": "cpu-pixels",
              "steps": 22_000},
}
PPO_ARGS = ["--agent", "ppo", "--preset", "mujoco", "--num-envs", "4", "--num-steps", "1024",
            "--gamma", "0.9", "--learning-rate", "1e-3", "--update-epochs", "10",
            "--num-minibatches", "64", "--no-norm-obs", "--no-norm-reward", "--torch-threads", "1",
            "--log-interval", "4096"]  # fmt: skip
WINDOW = 5_000


def train_jobs(task: str, args: argparse.Namespace) -> list[tuple[Path, list[str]]]:
    """(run folder, rlkd train arguments) of every run of ``task``."""
    env = args.env or TASKS[task]["env"]
    out = Path(args.out) / task
    jobs = []
    for seed in args.seeds:
        run = out / f"dreamer__{seed}"
        preset = TASKS[task]["preset"]
        jobs.append((run, ["--agent", "dreamer", "--preset", preset, "--env", env, "--seed", str(seed),
                           "--total-steps", str(args.steps or TASKS[task]["steps"]),
                           "--run-dir", str(run), *args.train_args.split()]))  # fmt: skip
        if task == "pendulum":
            run = out / f"ppo__{seed}"
            jobs.append((run, [*PPO_ARGS, "--env", env, "--seed", str(seed),
                               "--total-steps", str(args.ppo_steps), "--run-dir", str(run)]))  # fmt: skip
    return jobs


def checkpoint_steps(run: Path) -> list[int]:
    """Steps of a run folder's checkpoints (none when it has no folder yet)."""
    return [int(p.stem.split("_")[1]) for p in (run / "checkpoints").glob("step_*.pt")]


def finished(run: Path, argv: list[str]) -> bool:
    """A run is done when it has a checkpoint at its job's ``--total-steps``."""
    total = int(argv[argv.index("--total-steps") + 1])
    return any(step >= total for step in checkpoint_steps(run))


def resume_or_train(run: Path, argv: list[str], command: str = "train") -> list[str]:
    """``rlkd`` arguments that bring ``run`` to its job's total steps: a run with a checkpoint is
    resumed from it (also when ``--steps`` grew since it finished: the checkpoint holds the replay
    and every random state, so it continues as one longer run); one without starts over."""
    if checkpoint_steps(run):
        return ["resume", str(run), "--total-steps", argv[argv.index("--total-steps") + 1]]
    if run.exists():
        subprocess.run(["rm", "-rf", str(run)], check=True)
    run.parent.mkdir(parents=True, exist_ok=True)
    return [command, *argv]


def run_all(jobs: list[tuple[Path, list[str]]], parallel: int, command: str = "train") -> None:
    """Run the unfinished jobs (``rlkd train`` or ``rlkd pretrain`` arguments), ``parallel`` at a
    time, each pinned to its own core (more runs than cores share all of them)."""
    todo = [(run, argv) for run, argv in jobs if not finished(run, argv)]
    cores = sorted(os.sched_getaffinity(0))
    shared = ",".join(map(str, cores))
    running: dict[int, tuple[subprocess.Popen, Path]] = {}
    while todo or running:
        for core in range(parallel):
            if core not in running and todo:
                run, argv = todo.pop(0)
                rlkd_args = resume_or_train(run, argv, command)
                log = open(run.parent / f"{run.name}.log", "a")  # noqa: SIM115 (closed with the process)
                where = str(cores[core]) if parallel <= len(cores) else shared
                cmd = ["taskset", "-c", where, sys.executable, "-m", "rlkd.cli", *rlkd_args]
                running[core] = (subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT), run)
                print(f"cores {where}: {run.name}", flush=True)
        time.sleep(5)
        for core, (proc, run) in list(running.items()):
            if proc.poll() is not None:
                if proc.returncode != 0:
                    raise SystemExit(f"{run} failed (exit {proc.returncode}); see {run}.log")
                del running[core]


def episode_curve(run: Path, window: int = WINDOW) -> tuple[np.ndarray, np.ndarray]:
    """(steps, trailing-``window``-step mean of charts/episodic_return) of a run."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    events = acc.Scalars("charts/episodic_return")
    steps = np.array([e.step for e in events])
    values = np.array([e.value for e in events])
    trailing = np.array([values[(steps > s - window) & (steps <= s)].mean() for s in steps])
    return steps, trailing


def steps_to(steps: np.ndarray, curve: np.ndarray, threshold: float) -> float:
    """First step at which ``curve`` reaches ``threshold`` (inf if never)."""
    hit = np.flatnonzero(curve >= threshold)
    return float(steps[hit[0]]) if hit.size else math.inf


def t_interval(values: list[float]) -> tuple[float, float, float]:
    """Mean and 95% Student-t interval over seeds (``rlkd report``'s band); NaN if a value is inf."""
    from rlkd.analysis import confidence_band

    x = np.asarray(values, dtype=float)
    if not np.all(np.isfinite(x)):
        return float(np.mean(x)), math.nan, math.nan
    band = confidence_band(x[:, None])
    return float(band.mean[0]), float(band.lower[0]), float(band.upper[0])


def controller_returns(
    env_id: str, policy: Callable, episodes: int, **env_kwargs: object
) -> dict[str, float]:
    """Mean return (and success) of a scripted ``policy(env, obs) -> actions`` over ``episodes``."""
    from rlkd.envs import make_vec

    envs = make_vec(env_id, 1, seed=10_000, backend="gymnasium", **env_kwargs)
    obs, _ = envs.reset(seed=10_000)
    returns, successes = [], []
    while len(returns) < episodes:
        obs, _, _, _, info = envs.step(policy(envs, obs))
        if "episode" in info and info["_episode"][0]:
            returns.append(float(info["episode"]["r"][0]))
            if "success" in info["episode"]:
                successes.append(float(info["episode"]["success"][0]))
    envs.close()
    out = {"mean_return": float(np.mean(returns))}
    if successes:
        out["success_rate"] = float(np.mean(successes))
    return out


def pendulum_energy(envs: object, obs: np.ndarray) -> np.ndarray:
    """Swing up by pumping energy (full torque along the motion), then balance with a PD law."""
    cos, sin, vel = obs[0]
    if cos > 0.85:
        return np.clip([[-(10.0 * math.atan2(sin, cos) + 2.0 * vel)]], -2.0, 2.0)
    energy = vel**2 / 6.0 + 5.0 * (cos - 1.0)  # 0 at rest upright (m = l = 1, g = 10)
    return np.array([[2.0 * np.sign(vel or 1.0) if energy < 0 else -0.5 * np.sign(vel)]])


def make_vec_space(env_id: str) -> object:
    """The single-env action space of ``env_id``."""
    from rlkd.envs import make_vec

    envs = make_vec(env_id, 1, seed=0, backend="gymnasium")
    envs.close()
    return envs.single_action_space


def baselines(task: str, env: str, episodes: int, **env_kwargs: object) -> dict[str, dict[str, float]]:
    """The reference controllers' returns on ``env`` (made with ``env_kwargs``)."""
    rng = np.random.default_rng(0)
    space = make_vec_space(env)
    uniform = lambda e, o: rng.uniform(space.low, space.high, (1, *space.shape))  # noqa: E731
    out = {"random": controller_returns(env, uniform, episodes, **env_kwargs)}
    if task == "pendulum":
        out["energy + PD"] = controller_returns(env, pendulum_energy, episodes, **env_kwargs)
    else:
        from rlkd.envs.reach import centre_action, greedy_action

        centre = lambda e, o: centre_action(e.unwrapped.agent)  # noqa: E731
        greedy = lambda e, o: greedy_action(e.unwrapped.agent, e.unwrapped.target)  # noqa: E731
        out["target-blind (centre)"] = controller_returns(env, centre, episodes, **env_kwargs)
        out["greedy"] = controller_returns(env, greedy, episodes, **env_kwargs)
    return out


def analyse(task: str, args: argparse.Namespace) -> dict:
    from rlkd.analysis.evaluate import evaluate

    out = Path(args.out) / task
    refs = baselines(task, args.env or TASKS[task]["env"], args.episodes)
    threshold = TASKS[task]["threshold"]
    if threshold is None:
        lo, hi = refs["random"]["mean_return"], refs["greedy"]["mean_return"]
        threshold = lo + 0.8 * (hi - lo)
    summary: dict = {"task": task, "env": args.env or TASKS[task]["env"], "train_args": args.train_args,
                     "threshold": threshold, "baselines": refs, "agents": {}}  # fmt: skip
    curves = {}
    for agent in ("dreamer", "ppo"):
        runs = [out / f"{agent}__{s}" for s in args.seeds if (out / f"{agent}__{s}").exists()]
        if not runs:
            continue
        per_seed = []
        for run in runs:
            steps, curve = episode_curve(run)
            ev = evaluate(run, "latest", args.episodes, deterministic=True)
            kept = {k: ev[k] for k in ("mean_return", "success_rate", "checkpoint_step") if k in ev}
            per_seed.append({"run": run.name, "steps_to_threshold": steps_to(steps, curve, threshold),
                             "final_trailing_return": float(curve[-1]), **kept})  # fmt: skip
            curves.setdefault(agent, []).append((steps, curve))
        keys = [k for k in ("steps_to_threshold", "mean_return", "success_rate") if k in per_seed[0]]
        stats = {key: t_interval([s[key] for s in per_seed]) for key in keys}
        summary["agents"][agent] = {"seeds": per_seed, "mean_ci95": stats}
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    plot(curves, refs, threshold, out / "curves.png", task)
    (out / "summary.md").write_text(markdown(summary))
    print(markdown(summary))
    return summary


def markdown(summary: dict) -> str:
    lines = [f"task {summary['task']}, threshold {summary['threshold']:.1f}", "",
             "| agent | steps to threshold | eval return | eval success | per seed (steps; return) |",
             "|---|---|---|---|---|"]  # fmt: skip
    for agent, res in summary["agents"].items():
        st = res["mean_ci95"]
        fmt = lambda t, f: f"{t[0]:{f}} [{t[1]:{f}}, {t[2]:{f}}]"  # noqa: E731
        succ = fmt(st["success_rate"], ".2f") if "success_rate" in st else "-"
        seeds = "; ".join(f"{s['steps_to_threshold']:.0f}, {s['mean_return']:.1f}" for s in res["seeds"])
        steps, ret = fmt(st["steps_to_threshold"], ".0f"), fmt(st["mean_return"], ".1f")
        lines.append(f"| {agent} | {steps} | {ret} | {succ} | {seeds} |")
    for name, ref in summary["baselines"].items():
        succ = f"{ref['success_rate']:.2f}" if "success_rate" in ref else "-"
        lines.append(f"| {name} | - | {ref['mean_return']:.1f} | {succ} | - |")
    return "\n".join(lines) + "\n"


def plot(curves: dict, refs: dict, threshold: float, path: Path, task: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for agent, runs in curves.items():
        for i, (steps, curve) in enumerate(runs):
            ax.plot(steps, curve, color={"dreamer": "C0", "ppo": "C1"}[agent], alpha=0.8,
                    label=agent if i == 0 else None)  # fmt: skip
    for i, (name, ref) in enumerate(refs.items()):
        ax.axhline(ref["mean_return"], color=f"C{i + 2}", ls="--", label=name)
    ax.axhline(threshold, color="k", ls=":", label="threshold")
    ax.set_xscale("log" if "ppo" in curves else "linear")
    ax.set(xlabel="env steps", ylabel=f"episodic return (trailing {WINDOW} steps)", title=task)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--steps", type=int, help="Dreamer env steps per run (pendulum 30000, reach 12000)")
    parser.add_argument("--ppo-steps", type=int, default=300_000, help="PPO env steps per run (pendulum)")
    parser.add_argument("--out", default="runs/dreamer_bench")
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time, one core each")
    parser.add_argument("--episodes", type=int, default=50, help="evaluation episodes per run and controller")
    parser.add_argument("--analyse-only", action="store_true", help="skip training")
    parser.add_argument("--env", help="another env id for the task (e.g. rlkd/PointReach-Pixels-v0)")
    parser.add_argument(
        "--train-args", default="", help='more rlkd train flags for Dreamer, e.g. "--deter 200"'
    )
    args = parser.parse_args()
    if not args.analyse_only:
        run_all(train_jobs(args.task, args), args.parallel)
    analyse(args.task, args)


if __name__ == "__main__":
    main()
