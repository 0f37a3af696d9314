"""RDD's bonus as a visit count: how well it separates rarely from often visited states (issue 37).

RDD (Fang et al. 2025) trains its predictor on a fresh draw of N(mu(s) + m, sigma^2 I) at every
presentation of s and pays b(s) = ||f(s) - mu(s) - m||^2 / d. A predictor that has converged on k draws
of s outputs their mean, so b(s) = sigma^2 / k * chi^2_d / d: the bonus falls as 1/k and, among states
presented equally often, its relative spread is sqrt(2 / d). More outputs should therefore tell a state
seen once from one seen 64 times more reliably; sigma sets how large the count term is against the
predictor's approximation error (the "discrepancy" term), which does not scale with sigma.

The experiment, on the real module (``make_intrinsic("rdd", ...)``, default hidden width 256): 64
one-hot states, 8 at each visit count n in {0, 1, 2, 4, 8, 16, 32, 64}. The visits are shuffled and
the predictor is trained as PPO trains it: ``--epochs`` passes over them (PPO's update_epochs: each
pass draws new targets, so a state visited n times gets epochs x n draws), minibatches of
``--minibatch``, Adam at ``--lr`` (rlkd PPO's default learning rate, which the predictor shares).
Then the raw bonus of every state is read. Per configuration (output size, sigma, offset, seed):

* ``bonus[n]``: mean raw bonus of the states visited n times;
* ``cv[n]``: their spread, std / mean across the 8 states (the theory's sqrt(2 / d) when the count
  term dominates);
* ``separation``: (mean b at n = 1 - mean b at n = 64) / the pooled std of the two groups, a d' that
  says how reliably a single bonus reading ranks a once-visited state above a 64-times visited one.

    python bench/bench_rdd_mechanism.py --seeds 0 1 2 --out bench/results/rdd_mechanism

writes ``results.csv`` (one row per configuration, seed and count), ``summary.md`` and two PNGs.
Run it pinned to one core with one torch thread (the script sets the thread count).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import time
from pathlib import Path

import gymnasium
import numpy as np
import torch

from rlkd.intrinsic import RDD, make_intrinsic

COUNTS: tuple[int, ...] = (0, 1, 2, 4, 8, 16, 32, 64)
OUTPUT_DIMS: tuple[int, ...] = (32, 64, 128, 256)
SIGMAS: tuple[float, ...] = (0.1, 0.5, 1.0)
OFFSETS: tuple[float, ...] = (0.0, 1.0)


def build(output_dim: int, sigma: float, offset: float, num_states: int) -> RDD:
    """The real RDD module on one-hot vectors of size ``num_states``, with target offset ``offset``."""
    space = gymnasium.spaces.Box(0.0, 1.0, (num_states,), np.float32)
    # update_proportion 1: every presented visit trains the predictor (no Bernoulli thinning), so the
    # number of draws a state gets is exactly epochs x visits.
    module = make_intrinsic("rdd", space, num_envs=1, update_proportion=1.0, output_dim=output_dim,
                            rdd_sigma=sigma)  # fmt: skip
    assert isinstance(module, RDD)
    # make_intrinsic has no argument for the offset (PPO has no flag for it yet): set the attribute the
    # bonus and the loss read.
    module.target_mean = float(offset)
    return module


def bonus_by_count(
    output_dim: int,
    sigma: float,
    offset: float,
    seed: int,
    *,
    counts: tuple[int, ...] = COUNTS,
    per_count: int = 8,
    epochs: int = 4,
    minibatch: int = 16,
    lr: float = 3e-4,
) -> dict[int, np.ndarray]:
    """Train RDD's predictor on visits with known counts; return the raw bonus of each state by count.

    Args:
        output_dim: RDD output size d.
        sigma: Std of the target distribution.
        offset: Target mean offset m.
        seed: Seeds torch (networks, target draws) and the visit order.
        counts: Visit counts; ``per_count`` states get each.
        per_count: States per visit count.
        epochs: Passes over the shuffled visits (each draws new targets).
        minibatch: Visits per Adam step.
        lr: Adam learning rate of the predictor.

    Returns:
        ``{n: (per_count,) raw bonuses of the states visited n times}``.
    """
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    num_states = per_count * len(counts)
    states = torch.eye(num_states)  # (K, K) one-hot: no two states share an input feature
    visits_of = np.repeat(np.asarray(counts), per_count)  # (K,) the visit count of each state
    module = build(output_dim, sigma, offset, num_states)
    # Fixed observation statistics from every state once: normalisation is not what is measured here.
    module.init_obs_stats(states)
    optimizer = torch.optim.Adam(module.predictor.parameters(), lr=lr)
    visits = np.repeat(np.arange(num_states), visits_of)  # one entry per visit
    for _ in range(epochs):
        order = rng.permutation(visits)
        for start in range(0, len(order), minibatch):
            loss = module.loss(states[order[start : start + minibatch]])["predictor"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    bonus = module.bonus(states).numpy()  # (K,)
    return {n: bonus[visits_of == n] for n in counts}


def separation(rare: np.ndarray, often: np.ndarray) -> float:
    """d' of two groups of bonuses: difference of means over the pooled std."""
    pooled = np.sqrt((rare.var() + often.var()) / 2.0)
    return float((rare.mean() - often.mean()) / max(pooled, 1e-12))


def spread(bonuses: dict[int, np.ndarray], counts: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)) -> float:
    """Mean over visited counts of the relative spread (std / mean) of the bonus among equal-count states."""
    return float(np.mean([bonuses[n].std() / bonuses[n].mean() for n in counts]))


def run_grid(seeds: list[int], out: Path) -> list[dict[str, float]]:
    """Every (output size, sigma, offset, seed); rows of results.csv."""
    rows: list[dict[str, float]] = []
    for d, sigma, offset, seed in itertools.product(OUTPUT_DIMS, SIGMAS, OFFSETS, seeds):
        start = time.perf_counter()
        bonuses = bonus_by_count(d, sigma, offset, seed)
        sep = separation(bonuses[1], bonuses[64])
        for n in COUNTS:
            b = bonuses[n]
            rows.append({"output_dim": d, "sigma": sigma, "offset": offset, "seed": seed, "visits": n,
                         "bonus_mean": float(b.mean()), "bonus_std": float(b.std()),
                         "cv": float(b.std() / b.mean()), "separation_1_vs_64": sep})  # fmt: skip
        print(f"d={d:3d} sigma={sigma:.1f} m={offset:.0f} seed={seed}: b(1)={bonuses[1].mean():.4f} "
              f"b(64)={bonuses[64].mean():.4f} d'={sep:5.1f} cv={spread(bonuses):.3f} "
              f"({time.perf_counter() - start:.1f} s)", flush=True)  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "results.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return rows


def _table(rows: list[dict[str, float]], key: str, where: dict[str, float]) -> np.ndarray:
    """Seed-mean of ``key`` as a (sigma, output_dim) array for the rows matching ``where``."""
    grid = np.zeros((len(SIGMAS), len(OUTPUT_DIMS)))
    for i, sigma in enumerate(SIGMAS):
        for j, d in enumerate(OUTPUT_DIMS):
            vals = [r[key] for r in rows if r["sigma"] == sigma and r["output_dim"] == d
                    and all(r[k] == v for k, v in where.items())]  # fmt: skip
            grid[i, j] = np.mean(vals)
    return grid


def write_summary(rows: list[dict[str, float]], out: Path, seeds: list[int]) -> str:
    """Markdown tables of separation and spread; also written to summary.md."""
    lines = [f"Seeds {seeds}; 8 one-hot states per visit count; means over seeds.", ""]
    specs = (("separation_1_vs_64", "separation d' (n=1 vs n=64)", {"visits": 1}),
             ("cv", "relative spread std/mean at n=8 (theory sqrt(2/d): "
              + ", ".join(f"{np.sqrt(2 / d):.3f}" for d in OUTPUT_DIMS) + ")", {"visits": 8}))  # fmt: skip
    for key, title, where in specs:
        for offset in OFFSETS:
            grid = _table(rows, key, {**where, "offset": offset})
            lines += [f"**{title}, offset m = {offset:g}**", "",
                      "| sigma | " + " | ".join(f"d={d}" for d in OUTPUT_DIMS) + " |",
                      "|---" * (len(OUTPUT_DIMS) + 1) + "|"]  # fmt: skip
            for i, s in enumerate(SIGMAS):
                lines.append(f"| {s:g} | " + " | ".join(f"{v:.3g}" for v in grid[i]) + " |")
            lines.append("")
    text = "\n".join(lines)
    (out / "summary.md").write_text(text)
    return text


def plot(rows: list[dict[str, float]], out: Path) -> None:
    """bonus_by_count.png (bonus vs visits, a panel per sigma and offset) and separation.png."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(OFFSETS), len(SIGMAS), figsize=(12, 7), sharex=True)
    visited = [n for n in COUNTS if n > 0]
    for (i, offset), (j, sigma) in itertools.product(enumerate(OFFSETS), enumerate(SIGMAS)):
        ax = axes[i, j]
        for d in OUTPUT_DIMS:
            sel = [r for r in rows if r["offset"] == offset and r["sigma"] == sigma and r["output_dim"] == d]
            mean = [np.mean([r["bonus_mean"] for r in sel if r["visits"] == n]) for n in visited]
            std = [np.mean([r["bonus_std"] for r in sel if r["visits"] == n]) for n in visited]
            ax.errorbar(visited, mean, yerr=std, marker="o", capsize=2, label=f"d={d}")
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_title(f"sigma={sigma:g}, offset m={offset:g}")
        if i == len(OFFSETS) - 1:
            ax.set_xlabel("visits n (x4 draws: PPO's epochs)")
        if j == 0:
            ax.set_ylabel("raw bonus (mean, bar: std across states)")
    axes[0, 0].legend()
    fig.tight_layout()
    fig.savefig(out / "bonus_by_count.png", dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for offset, style in zip(OFFSETS, ("-", "--"), strict=True):
        sep = _table(rows, "separation_1_vs_64", {"visits": 1, "offset": offset})
        cv = _table(rows, "cv", {"visits": 8, "offset": offset})
        for i, sigma in enumerate(SIGMAS):
            axes[0].plot(OUTPUT_DIMS, sep[i], style, marker="o", label=f"sigma={sigma:g}, m={offset:g}")
            axes[1].plot(OUTPUT_DIMS, cv[i], style, marker="o", label=f"sigma={sigma:g}, m={offset:g}")
    axes[1].plot(OUTPUT_DIMS, np.sqrt(2.0 / np.asarray(OUTPUT_DIMS)), "k:", label="sqrt(2/d)")
    axes[0].set_ylabel("separation d', n=1 vs n=64")
    axes[1].set_ylabel("std/mean of the bonus, states with n=8")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("output size d")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "separation.png", dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", default="bench/results/rdd_mechanism")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    start = time.perf_counter()
    rows = run_grid(args.seeds, out)
    print(write_summary(rows, out, args.seeds))
    plot(rows, out)
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
