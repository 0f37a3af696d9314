"""Seconds per DisWM world-model + behaviour update at the paper sizes on CPU.

Usage: ``python bench/bench_diswm.py [--updates N] [--threads 2]``. Reference on the 2-core dev
machine (official dreamer-torch-based DisWM code): ~21 s/update at 50x50, ~5.8 s at 16x50.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np
import torch
from rlkd.agents.dreamer import Agent, DreamerConfig, build_optimizers, update

from rlkd.world_model.codecs import BetaVAEEncoder


def bench(batch: int, length: int, updates: int, action_dim: int = 6) -> float:
    """Mean seconds per update (after one warm-up) with distillation on."""
    cfg = dataclasses.replace(DreamerConfig(), batch_size=batch, batch_length=length, agent="diswm",
                              pretrained="-")  # fmt: skip
    teacher = BetaVAEEncoder(cfg.z_dim, cfg.cnn_depth).requires_grad_(False).eval()
    agent = Agent(cfg, (64, 64, 3), action_dim, beta_vae=True, teacher=teacher)
    opts = build_optimizers(agent, cfg)
    rng = np.random.default_rng(0)
    data = {
        "obs": torch.as_tensor(rng.integers(0, 255, (batch, length, 64, 64, 3), dtype=np.uint8)),
        "action": torch.as_tensor(rng.uniform(-1, 1, (batch, length, action_dim)).astype(np.float32)),
        "reward": torch.as_tensor(rng.normal(size=(batch, length)).astype(np.float32)),
        "is_first": torch.zeros(batch, length, dtype=torch.bool),
        "is_terminal": torch.zeros(batch, length, dtype=torch.bool),
    }
    data["is_first"][:, 0] = True
    update(agent, opts, data, 0.1)  # warm-up
    t0 = time.perf_counter()
    for _ in range(updates):
        update(agent, opts, data, 0.1)
    return (time.perf_counter() - t0) / updates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--updates", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for batch, length, ref in ((16, 50, 5.8), (50, 50, 21.0)):
        sec = bench(batch, length, args.updates)
        print(f"batch {batch}x{length}: {sec:.2f} s/update ({1 / sec:.3f} updates/s); official code ~{ref} s")


if __name__ == "__main__":
    main()
