"""Seconds per Dreamer/DisWM update at the CPU sizes, this checkout against an older commit, side by side.

Usage::

    python bench/bench_dreamer_speed.py [--old 141f644] [--pairs 3] [--updates 10] [--core 0]

Builds a git worktree of ``--old`` in a temporary folder, then alternates old and new (A B A B ...)
in fresh processes, each pinned to one core (``taskset``) with one torch thread, each timing
``--updates`` world-model + behaviour updates after two warm-up updates on a fixed random batch
(16 x 32 windows of 64x64x3 frames, 2-d actions; sizes: deter 64, stoch 16, hidden 64, units 64,
cnn_depth 8, imagination horizon 15). Agents: ``dreamer`` (old: the beta-VAE Dreamer of that
commit; new: DreamerV2's plain conv encoder/decoder) and ``diswm`` (beta-VAE with distillation on,
eta 0.1, both commits). Prints the median, min and max seconds per update and the old/new ratio.
Run it on an otherwise idle machine.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZES = {"deter": 64, "stoch": 16, "hidden": 64, "units": 64, "cnn_depth": 8, "batch_size": 16,
         "batch_length": 32, "imag_horizon": 15}  # fmt: skip


def child(agent_name: str, updates: int) -> None:
    """Time ``updates`` updates with the rlkd on sys.path; print seconds per update as JSON."""
    import dataclasses

    import numpy as np
    import torch

    torch.set_num_threads(1)
    from rlkd.agents import dreamer

    diswm = agent_name == "diswm"
    cfg = dataclasses.replace(dreamer.DreamerConfig(), **SIZES, agent=agent_name,
                              pretrained="bench" if diswm else "")  # fmt: skip
    new_api = "obs_shape" in inspect.signature(dreamer.Agent).parameters
    teacher = None
    if diswm:
        teacher = dreamer.BetaVAEEncoder(cfg.z_dim, cfg.cnn_depth).requires_grad_(False).eval()
    if new_api:
        agent = dreamer.Agent(cfg, (64, 64, 3), 2, beta_vae=diswm, teacher=teacher)
    else:
        agent = dreamer.Agent(cfg, 2, teacher)
    opts = dreamer.build_optimizers(agent, cfg)
    rng = np.random.default_rng(0)
    b, t = cfg.batch_size, cfg.batch_length
    frames = torch.as_tensor(rng.integers(0, 255, (b, t, 64, 64, 3), dtype=np.uint8))
    data = {
        "obs" if new_api else "image": frames,
        "action": torch.as_tensor(rng.uniform(-1, 1, (b, t, 2)).astype(np.float32)),
        "reward": torch.as_tensor(rng.normal(size=(b, t)).astype(np.float32)),
        "is_first": torch.zeros(b, t, dtype=torch.bool),
        "is_terminal": torch.zeros(b, t, dtype=torch.bool),
    }
    data["is_first"][:, 0] = True
    eta = 0.1 if diswm else 0.0
    for _ in range(2):
        dreamer.update(agent, opts, data, eta)
    t0 = time.perf_counter()
    for _ in range(updates):
        dreamer.update(agent, opts, data, eta)
    print(json.dumps({"sec": (time.perf_counter() - t0) / updates}))


def run_child(tree: Path | None, agent: str, updates: int, core: int) -> float:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    if tree is not None:
        env["PYTHONPATH"] = str(tree)  # found before the editable install of this checkout
    cmd = ["taskset", "-c", str(core), sys.executable, __file__, "--child", agent, "--updates", str(updates)]
    out = subprocess.run(cmd, env=env, cwd=tempfile.gettempdir(), check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])["sec"]


def old_tree(commit: str, where: Path) -> Path:
    """A worktree of ``commit`` importable as ``rlkd`` (envs/ and agents/ linked into the package)."""
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(where), commit],
                   check=True, capture_output=True)  # fmt: skip
    for sub in ("envs", "agents"):
        (where / "rlkd" / sub).symlink_to(where / sub)
    return where


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--old", default="141f644", help="commit to compare against")
    parser.add_argument("--pairs", type=int, default=3, help="old/new pairs per agent")
    parser.add_argument("--updates", type=int, default=10, help="timed updates per process")
    parser.add_argument("--core", type=int, default=0, help="core every process is pinned to")
    parser.add_argument("--agents", default="dreamer,diswm")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.updates)
        return
    tmp = Path(tempfile.mkdtemp(prefix="rlkd-old-"))
    try:
        tree = old_tree(args.old, tmp / "tree")
        for agent in args.agents.split(","):
            times: dict[str, list[float]] = {"old": [], "new": []}
            for _ in range(args.pairs):
                times["old"].append(run_child(tree, agent, args.updates, args.core))
                times["new"].append(run_child(None, agent, args.updates, args.core))
            med = {k: statistics.median(v) for k, v in times.items()}
            for k, v in times.items():
                name = args.old if k == "old" else "this checkout"
                print(f"{agent:8s} {k} ({name}): median {med[k]:.3f} s/update "
                      f"(min {min(v):.3f}, max {max(v):.3f})")  # fmt: skip
            ratios = [o / n for o, n in zip(times["old"], times["new"], strict=True)]
            print(f"{agent:8s} speed-up old/new: {med['old'] / med['new']:.2f}x "
                  f"(pairs {min(ratios):.2f}-{max(ratios):.2f}x)")  # fmt: skip
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tmp / "tree")],
                       capture_output=True)  # fmt: skip
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
