"""Speed benchmark: rlkd's PPO against stable-baselines3's at equal hyperparameters, side by side.

    python bench/bench_ppo_vs_sb3.py [--cases cartpole,halfcheetah,backends,breakout] [--pairs 3] [--core 0]

Each pair runs rlkd then SB3 (alternated A B A B ...) as whole processes pinned to one core
(``taskset -c``) with one torch thread, and reports env steps per second of wall time (start-up
included), CPU seconds, and the rlkd/SB3 speed ratio per pair (median, min-max). Settings are
mirrored: 8 envs, 64x64 tanh MLPs for actor and critic, Adam with the same learning rate, GAE,
clipped surrogate, the same epochs and minibatches:

* ``cartpole``: CartPole-v1, 8 x 128 steps, 4 epochs x 4 minibatches (batch 256), 100k steps;
  rlkd on its default backend (envpool), SB3 on its DummyVecEnv of Gymnasium envs.
* ``backends``: not SB3 but rlkd's two env backends, the ``cartpole`` settings on envpool (A) and
  on Gymnasium (B: a sync vector env of ``CartPole-v1`` copies, as ``make_vec`` builds it).
* ``halfcheetah``: HalfCheetah-v5, 8 x 256 steps, 10 epochs x 32 minibatches (batch 64), 50k
  steps, observation and reward normalisation (rlkd's ``norm_obs``/``norm_reward``, SB3's
  ``VecNormalize``); both on Gymnasium's MuJoCo env.
* ``breakout``: envpool ``Breakout-v5`` (its default Atari preprocessing: 84x84 grayscale, 4
  frames), 8 x 128 steps, 4 epochs x 4 minibatches, clip 0.1, entropy 0.01 (CleanRL's
  ``ppo_atari``), 20,480 steps; the Nature CNN with 512 features shared by actor and critic on
  both sides (SB3's ``CnnPolicy``); SB3 reads the same envpool env through
  ``rlkd.intrinsic.sb3.VectorEnvToSB3``.

Run it on an otherwise idle machine; it prints one table.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CASES = {
    "cartpole": {
        "env": "CartPole-v1", "steps": 100_000, "n_steps": 128, "epochs": 4, "minibatches": 4,
        "lr": 2.5e-4, "gamma": 0.99, "ent": 0.01, "normalize": False, "backend": "auto",
    },
    # Not against SB3: rlkd's envpool backend (A) against its Gymnasium backend (B), same PPO.
    "backends": {
        "env": "CartPole-v1", "steps": 100_000, "n_steps": 128, "epochs": 4, "minibatches": 4,
        "lr": 2.5e-4, "gamma": 0.99, "ent": 0.01, "normalize": False, "backend": "envpool",
        "vs_backend": "gymnasium",
    },
    "halfcheetah": {
        "env": "HalfCheetah-v5", "steps": 50_000, "n_steps": 256, "epochs": 10, "minibatches": 32,
        "lr": 3e-4, "gamma": 0.99, "ent": 0.0, "normalize": True, "backend": "gymnasium",
    },
    # CleanRL's ppo_atari settings; both learners on the same envpool env (SB3 through VectorEnvToSB3).
    "breakout": {
        "env": "Breakout-v5", "steps": 20_480, "n_steps": 128, "epochs": 4, "minibatches": 4,
        "lr": 2.5e-4, "gamma": 0.99, "ent": 0.01, "normalize": False, "backend": "envpool", "clip": 0.1,
    },
}  # fmt: skip


def rlkd_cmd(case: dict, run_dir: Path) -> list[str]:
    return [sys.executable, "-m", "rlkd.cli", "train", "--env", case["env"], "--intrinsic", "none",
            "--num-envs", "8", "--num-steps", str(case["n_steps"]), "--update-epochs", str(case["epochs"]),
            "--num-minibatches", str(case["minibatches"]), "--learning-rate", str(case["lr"]),
            "--gamma", str(case["gamma"]), "--ent-coef", str(case["ent"]), "--hidden-size", "64",
            "--total-steps", str(case["steps"]), "--norm-obs" if case["normalize"] else "--no-norm-obs",
            "--norm-reward" if case["normalize"] else "--no-norm-reward", "--env-backend", case["backend"],
            "--clip-coef", str(case.get("clip", 0.2)),
            "--no-clip-vloss", "--no-anneal-lr",  # SB3: clip_range_vf None, a constant learning rate
            "--torch-threads", "1", "--log-interval", "100000000", "--checkpoint-interval", "100000000",
            "--run-dir", str(run_dir)]  # fmt: skip


def sb3_child(name: str) -> None:
    """SB3's PPO with the same settings (run in the pinned child process)."""
    import torch
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    torch.set_num_threads(1)
    case = CASES[name]
    if case["backend"] == "envpool":  # images: the same envpool env rlkd trains on, Nature CNN
        from rlkd.envs import make_vec

        from rlkd.intrinsic.sb3 import VectorEnvToSB3

        venv, policy, kwargs = VectorEnvToSB3(make_vec(case["env"], 8, seed=1)), "CnnPolicy", {}
    else:
        venv, policy = make_vec_env(case["env"], n_envs=8, seed=1), "MlpPolicy"
        kwargs = {"net_arch": {"pi": [64, 64], "vf": [64, 64]}}
    if case["normalize"]:
        venv = VecNormalize(venv, gamma=case["gamma"])
    batch = 8 * case["n_steps"] // case["minibatches"]
    model = PPO(policy, venv, n_steps=case["n_steps"], batch_size=batch, n_epochs=case["epochs"],
                learning_rate=case["lr"], gamma=case["gamma"], ent_coef=case["ent"], seed=1, device="cpu",
                clip_range=case.get("clip", 0.2), policy_kwargs=kwargs)  # fmt: skip
    model.learn(case["steps"])


def timed(cmd: list[str], core: int) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of ``cmd`` pinned to ``core`` with one thread."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(["taskset", "-c", str(core), *cmd], env=env, check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)  # fmt: skip
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("--cases", default="cartpole,halfcheetah")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--core", type=int, default=0)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sb3_child(args.child)
        return
    print("| case (A vs B) | steps | A steps/s | B steps/s | A CPU s | B CPU s | speed ratio A/B |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name in args.cases.split(","):
        case = CASES[name]
        walls: dict[str, list[float]] = {"rlkd": [], "sb3": []}
        cpus: dict[str, list[float]] = {"rlkd": [], "sb3": []}
        label = f"{name} (rlkd vs SB3)"
        for _ in range(args.pairs):
            with tempfile.TemporaryDirectory() as tmp:
                other = [sys.executable, __file__, "--child", name]
                if "vs_backend" in case:
                    label = f"{name} (rlkd on {case['backend']} vs on {case['vs_backend']})"
                    other = rlkd_cmd({**case, "backend": case["vs_backend"]}, Path(tmp) / "run_b")
                for who, cmd in (("rlkd", rlkd_cmd(case, Path(tmp) / "run")), ("sb3", other)):
                    wall, cpu = timed(cmd, args.core)
                    walls[who].append(wall)
                    cpus[who].append(cpu)
        ratios = [s / r for r, s in zip(walls["rlkd"], walls["sb3"], strict=True)]
        sps = {k: case["steps"] / statistics.median(v) for k, v in walls.items()}
        cpu = {k: statistics.median(v) for k, v in cpus.items()}
        print(f"| {label} | {case['steps']} | {sps['rlkd']:.0f} | {sps['sb3']:.0f} | {cpu['rlkd']:.1f} | "
              f"{cpu['sb3']:.1f} | {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f}) |")


if __name__ == "__main__":
    main()
