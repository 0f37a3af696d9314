"""Throughput of the AGV warehouse env: native numpy vector env vs. SyncVectorEnv vs. envpool.

Usage: ``python bench/bench_agv.py [--quick]``. Prints a markdown table of env steps/s
(random actions, vector observations, 16 lidar beams, complex-dynamic), next to
``gymnasium.vector.SyncVectorEnv`` over the single-env class and envpool's C++ ``CartPole-v1``
at the same env counts, plus pixel observations at 64 envs. About 2 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections.abc import Callable

import gymnasium as gym
import numpy as np
from rlkd.envs.agv import AGVWarehouseEnv, AGVWarehouseVectorEnv

SCENARIO = "complex-dynamic"


def steps_per_second(step: Callable[[], None], num_envs: int, budget_s: float, min_steps: int = 3) -> float:
    """Call ``step`` until ``budget_s`` has passed (at least ``min_steps`` times); env steps/s."""
    step()  # warm-up (first autoresets, caches)
    n, t0 = 0, time.perf_counter()
    while n < min_steps or time.perf_counter() - t0 < budget_s:
        step()
        n += 1
    return n * num_envs / (time.perf_counter() - t0)


def bench_native(num_envs: int, budget_s: float, obs_mode: str = "vector") -> float:
    env = AGVWarehouseVectorEnv(num_envs, SCENARIO, obs_mode=obs_mode, distractors=obs_mode == "pixels")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (64, num_envs, 2)).astype(np.float32)  # pre-drawn: time the env only
    i = 0

    def step() -> None:
        nonlocal i
        env.step(actions[i % 64])
        i += 1

    return steps_per_second(step, num_envs, budget_s)


def bench_sync(num_envs: int, budget_s: float) -> float:
    env = gym.vector.SyncVectorEnv(
        [lambda: AGVWarehouseEnv(SCENARIO) for _ in range(num_envs)],
        autoreset_mode=gym.vector.AutoresetMode.SAME_STEP,
    )
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    actions = rng.uniform(-1, 1, (8, num_envs, 2)).astype(np.float32)
    i = 0

    def step() -> None:
        nonlocal i
        env.step(actions[i % 8])
        i += 1

    return steps_per_second(step, num_envs, budget_s)


def bench_envpool(num_envs: int, budget_s: float) -> float:
    import envpool

    env = envpool.make_gymnasium("CartPole-v1", num_envs=num_envs)
    env.reset()
    actions = np.zeros(num_envs, dtype=np.int32)

    def step() -> None:
        env.step(actions)

    return steps_per_second(step, num_envs, budget_s)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="0.3 s per measurement instead of 3 s")
    args = parser.parse_args()
    # envpool's spaces trigger Gymnasium's float64->float32 Box warnings; they are not ours.
    warnings.filterwarnings("ignore", message=".*precision lowered.*")
    budget = 0.3 if args.quick else 3.0
    counts = (1, 64, 1024, 4096)
    rows = []
    for n in counts:
        native = bench_native(n, budget)
        sync = bench_sync(n, budget)
        pool = bench_envpool(n, budget)
        rows.append((n, native, sync, native / sync, pool))
        print(f"measured num_envs={n}", flush=True)
    pixels = bench_native(64, budget, obs_mode="pixels")
    print()
    print(f"AGV `{SCENARIO}`, vector obs, 16 beams, random actions; steps/s on this machine")
    print()
    print("| envs | AGV native vector | AGV SyncVectorEnv | native / sync | envpool CartPole-v1 |")
    print("|---:|---:|---:|---:|---:|")
    for n, native, sync, ratio, pool in rows:
        print(f"| {n} | {native:,.0f} | {sync:,.0f} | {ratio:.1f}x | {pool:,.0f} |")
    print()
    print(f"AGV pixel obs (64x64x3, colour distractors), 64 envs: {pixels:,.0f} steps/s")


if __name__ == "__main__":
    main()
