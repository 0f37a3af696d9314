"""Diagnosis of the pixel point-reach gap: how fast DreamerV2's world model learns what imagination
needs, from state and from 64x64 pixels, on the same random-policy data.

    python bench/bench_reach_model.py [--updates 3000] [--variants state pixels-d8-red ...]
    python bench/bench_reach_model.py --summary-only   # the table from the variants' JSON files

Data: ``rlkd/PointReach`` driven by uniformly random actions, 8 envs x 1250 steps for training and
8 x 250 (other seeds) held out; each step is stored both as the 64x64 frame and as the state
(agent x, y, target x, y) of the same env, so every variant sees the same trajectories. Each
variant trains only the world model of ``--agent dreamer --preset cpu-pixels`` with deter 64 (its
value until the probes below; stoch 16, units 64, model lr 1e-3, batch 16 x 16, one torch
thread), changed as the variant's name says, and
every ``--eval-every`` updates scores held-out windows of 32 steps:

* ``reward_ev_post``: explained variance of the reward head on the posterior (filtering) states;
* ``reward_ev_open``: explained variance of the rewards predicted open-loop by the prior, from the
  posterior at step 8 with the recorded actions for 15 steps (what the actor's imagination sees,
  its horizon), windows crossing an episode start left out;
* ``kl``: posterior-prior KL (nats per step), as ``world_model/kl_value``.

Variants: ``state``; ``pixels-dN`` (cnn_depth N) with the agent drawn as in
``rlkd/PointReach-Pixels-v1`` (white), ``-red`` as in ``-v0`` (red), ``-aN`` an N-pixel agent
(default 7), ``-kl0.1`` KL loss scale 0.1 (the official Atari configs' ``kl_scale``; DMC's is
1.0), ``-field=value`` any numeric config field (``pixels-deter=200``). Pixel variants also write
their held-out reconstructions after training (``<variant>_reconstructions.png``).

One seed; a diagnosis, not a learning claim. Writes ``--out``/summary.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

STEPS, HELD_OUT, ENVS, CONTEXT, HORIZON = 1250, 250, 8, 8, 15
VARIANTS = ["state", "pixels-d8-red", "pixels-d16-red", "pixels-d8-red-kl0.1", "pixels-d8", "pixels-d8-a9",
            "pixels-deter=128", "pixels-deter=200"]  # fmt: skip


def collect(steps: int, seed: int, **pixel_kwargs: object) -> dict[str, np.ndarray]:
    """Random-policy data stored as ``--agent dreamer`` stores it (``agents.dreamer.store``): per env
    and step (ENVS, n, ...) the observation as ``pixels`` and as ``state``, the action that led to
    it, the reward received on arriving, ``is_first``. Two envs (state, pixels), same seed and
    actions, so the trajectories are the same."""
    from rlkd.agents.dreamer import store
    from rlkd.envs.reach import PointReachVectorEnv

    from rlkd.world_model.replay import Replay

    data = {}
    for mode, shape, dtype in (("state", (4,), np.float32), ("pixels", (64, 64, 3), np.uint8)):
        kwargs = {"obs_mode": "vector"} if mode == "state" else {"obs_mode": "pixels", **pixel_kwargs}
        env = PointReachVectorEnv(ENVS, **kwargs)
        replay = Replay(ENVS, ENVS * steps * 2, shape, dtype, 2, 0)
        obs, _ = env.reset(seed=seed)
        for i in range(ENVS):
            replay.add(i, obs[i], np.zeros(2, np.float32), 0.0, True, False)
        actions = np.random.default_rng(seed).uniform(-1, 1, (steps, ENVS, 2)).astype(np.float32)
        for action in actions:
            obs, reward, term, trunc, info = env.step(action)
            store(replay, info, obs, action, reward, term, term | trunc)
        n = int(replay.filled.min())
        data[mode] = replay.data["obs"][:, :n]
        data |= {k: replay.data[k][:, :n] for k in ("action", "reward", "is_first")}
    return data


def windows(
    data: dict[str, np.ndarray], key: str, length: int, starts: np.ndarray
) -> dict[str, torch.Tensor]:
    """(B, length) windows of env ``starts[:, 0]`` from step ``starts[:, 1]``; obs from ``key``."""
    env, t0 = starts[:, 0:1], starts[:, 1:2] + np.arange(length)
    batch = {
        "obs": data[key][env, t0],
        "action": data["action"][env, t0],
        "reward": data["reward"][env, t0],
        "is_first": data["is_first"][env, t0].copy(),
        "is_terminal": np.zeros(t0.shape, bool),
    }
    batch["is_first"][:, 0] = True
    return {k: torch.as_tensor(v) for k, v in batch.items()}


def explained(pred: torch.Tensor, true: torch.Tensor) -> float:
    return float(1.0 - (pred - true).square().mean() / true.var())


@torch.no_grad()
def evaluate(agent, test: dict[str, np.ndarray], key: str) -> dict[str, float]:
    wm = agent.wm
    length = CONTEXT + HORIZON
    n = test["reward"].shape[1]
    starts = np.array([(e, t) for e in range(ENVS) for t in range(0, n - length, 6)])
    batch = windows(test, key, length, starts)
    losses, post, metrics = wm.loss(batch)
    reward_post = wm.reward(wm.rssm.feat(post)).squeeze(-1)
    # Open loop: the prior from the posterior at step CONTEXT - 1, fed the recorded actions.
    clean = ~batch["is_first"][:, CONTEXT:].any(1)  # no episode start inside the imagined part
    state = {k: v[:, CONTEXT - 1] for k, v in post.items()}
    preds = []
    for t in range(CONTEXT - 1, length - 1):
        state = wm.rssm.img_step(state, batch["action"][:, t], sample=False)
        preds.append(wm.reward(wm.rssm.feat(state)).squeeze(-1))
    open_loop = torch.stack(preds, 1)[clean]
    del losses
    return {
        "reward_ev_post": explained(reward_post, batch["reward"]),
        "reward_ev_open": explained(open_loop, batch["reward"][:, CONTEXT:][clean]),
        "kl": float(metrics["kl_value"]),
    }


def parse_variant(name: str) -> tuple[str, dict[str, object], dict[str, object]]:
    """``state``, ``pixels-d8``, ``pixels-d16-red-kl0.1``, ``pixels-d8-a9``, ``pixels-deter=128``
    -> (observation key, DreamerConfig overrides, env kwargs). ``dN``: cnn_depth N; ``klX``: KL
    loss scale X; ``red``: the agent drawn red as ``PointReach-Pixels-v0`` did; ``aN``: N pixels
    wide; ``field=value``: any numeric DreamerConfig field."""
    from rlkd.envs.reach import RED_AGENT

    parts = name.split("-")
    cfg: dict[str, object] = {"cnn_depth": 8}
    env: dict[str, object] = {}
    for p in parts[1:]:
        if "=" in p:
            field, value = p.split("=")
            cfg[field] = type(getattr(dreamer_config(), field))(float(value))
        elif p.startswith("kl"):
            cfg["loss_scales"] = {**dreamer_config().loss_scales, "kl": float(p[2:])}
        elif p.startswith("d"):
            cfg["cnn_depth"] = int(p[1:])
        elif p.startswith("a"):
            env["agent_px"] = int(p[1:])
        elif p == "red":
            env["agent_rgb"] = RED_AGENT
        else:
            raise SystemExit(f"error: unknown variant part {p!r} in {name!r}")
    return parts[0], cfg, env


def dreamer_config():
    from rlkd.agents import dreamer

    # Every variant starts from cpu-pixels as it was when this probe was written (deter 64); the
    # preset has deter 200 since, which the variant ``pixels-deter=200`` measures.
    return dataclasses.replace(dreamer.DreamerConfig(), **{**dreamer.PRESETS["cpu-pixels"], "deter": 64})


def save_reconstructions(agent, test: dict[str, np.ndarray], path: Path) -> None:
    """Held-out frames (top row) and their posterior reconstructions (bottom), 8 steps of one env."""
    import imageio

    from rlkd.world_model.codecs import preprocess

    with torch.no_grad():
        batch = windows(test, "pixels", 8, np.array([[0, 20]]))
        recon = agent.wm.loss(batch)[2]["recon"][0]
    rows = [torch.cat(list(img), 1) for img in (preprocess(batch["obs"][0]), recon)]
    imageio.imwrite(path, ((torch.cat(rows, 0) + 0.5).clamp(0, 1) * 255).byte().numpy())


def run_variant(name: str, updates: int, every: int, out: Path) -> list[dict[str, float]]:
    from rlkd.agents import dreamer

    torch.manual_seed(0)
    torch.set_num_threads(1)
    key, overrides, env = parse_variant(name)
    cfg = dataclasses.replace(dreamer_config(), **overrides)
    train, test = collect(STEPS, 0, **env), collect(HELD_OUT, 1, **env)
    agent = dreamer.Agent(cfg, train[key].shape[2:], 2)
    opt = dreamer.build_optimizers(agent, cfg)["model"]
    params = [p for g in opt.param_groups for p in g["params"]]
    rng = np.random.default_rng(0)
    rows, t0 = [], time.perf_counter()
    for update in range(1, updates + 1):
        starts = np.stack(
            [
                rng.integers(0, ENVS, cfg.batch_size),
                rng.integers(0, train["reward"].shape[1] - cfg.batch_length, cfg.batch_size),
            ],
            1,
        )
        losses, _, _ = agent.wm.loss(windows(train, key, cfg.batch_length, starts))
        scaled = {k: v * cfg.loss_scales.get(k, 1.0) for k, v in losses.items()}
        dreamer.clip_step(opt, scaled, params, cfg.grad_clip, None, "world model")
        if update % every == 0:
            seconds = time.perf_counter() - t0
            rows.append({"update": update, "seconds": round(seconds, 1), **evaluate(agent, test, key)})
            print(name, json.dumps(rows[-1]), flush=True)
            t0 += time.perf_counter() - t0 - seconds  # evaluation time is not training time
    (out / f"{name}.json").write_text(json.dumps(rows))
    if key == "pixels":
        save_reconstructions(agent, test, out / f"{name}_reconstructions.png")
    return rows


def write_summary(out: Path, variants: list[str]) -> None:
    """``summary.md``: one table row per variant and evaluation, from the variants' JSON files."""
    lines = [
        "| variant | update | train s | reward EV (posterior) | reward EV (open loop, 15 steps) | KL |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name in variants:
        for row in json.loads((out / f"{name}.json").read_text()):
            lines.append(
                f"| {name} | {row['update']} | {row['seconds']} | {row['reward_ev_post']:.2f} | "
                f"{row['reward_ev_open']:.2f} | {row['kl']:.2f} |"
            )
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--variants", nargs="+", default=VARIANTS)
    parser.add_argument("--updates", type=int, default=3000)
    parser.add_argument("--eval-every", type=int, default=500)
    parser.add_argument("--out", default="bench/results/reach_model")
    parser.add_argument(
        "--only", default=None, help="run one variant in this process (the parallel runner uses it)"
    )
    parser.add_argument("--summary-only", action="store_true", help="write the table, train nothing")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.summary_only:
        write_summary(out, args.variants)
        return
    if args.only:
        run_variant(args.only, args.updates, args.eval_every, out)
        return
    import subprocess
    import sys

    pending, running = list(args.variants), {}
    while pending or running:
        for core in (0, 1):
            if core not in running and pending:
                name = pending.pop(0)
                cmd = [
                    "taskset",
                    "-c",
                    str(core),
                    sys.executable,
                    __file__,
                    "--only",
                    name,
                    "--out",
                    str(out),
                    "--updates",
                    str(args.updates),
                    "--eval-every",
                    str(args.eval_every),
                ]
                running[core] = subprocess.Popen(cmd)
        time.sleep(2)
        running = {c: p for c, p in running.items() if p.poll() is None}
    write_summary(out, args.variants)


if __name__ == "__main__":
    main()
