"""What a pretrained DisWM teacher's latent holds about point reach, on held-out episodes.

Usage::

    python bench/probe_teacher.py PRETRAIN_RUN [--episodes 600] [--seed 1000] [--out DIR] [--env-kwargs YAML]

Episodes of ``rlkd/PointReach-Pixels-v1`` with seeds the source data never used, in each colour
set ("train", the source videos' colours, and "test", the transfer target's), drawn at the
teacher's frame size, with uniformly random actions, so that the agent's position says nothing
about the target's (a policy that reaches the target would let a probe read the target off the
agent); one frame in five is kept. Every frame is encoded by the teacher's beta-VAE encoder:
``z`` is its mean, the latent DisWM distils. Probes map ``z`` to the agent's and the target's
(x, y):

* ``linear``: least squares with a bias;
* ``mlp``: two hidden layers of 64 (ELU), Adam with weight decay, full batch, inputs standardised.

Both are fitted on the frames of the even envs and scored by R^2 on the odd envs' frames, so the
targets scored are placements the probe never saw (1: the position is fully recoverable; 0: no
better than its mean). The teacher "holds the task" when, in the source colours, the target's R^2
(mean of x and y, best probe) reaches 0.5 and at least half the agent's. Also writes
``teacher_<set>.png`` (top: frames, bottom: reconstructions through the encoder, one posterior
step and the decoder) and ``probe_teacher.json`` in ``--out`` (default: the run folder).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image
from rlkd.agents.pretrain import PretrainConfig
from rlkd.envs import make_vec
from torch import nn

from rlkd.core.run import Run
from rlkd.world_model.codecs import preprocess
from rlkd.world_model.model import WorldModel

TARGETS = ("agent_x", "agent_y", "target_x", "target_y")


def load_teacher(run_dir: str) -> tuple[WorldModel, int, int]:
    """The pretrained action-free world model of ``run_dir`` (latest checkpoint), its image size and
    its update count."""
    payload = Run.open(run_dir).load_checkpoint("latest")
    meta = payload["state"]["meta"]
    cfg = PretrainConfig(**{k: v for k, v in meta.items() if k in PretrainConfig.__dataclass_fields__})
    size = int(meta["image_size"])
    model = WorldModel(cfg, action_dim=0, obs_shape=(size, size, 3), beta_vae=True)
    model.load_state_dict(payload["state"]["model"])
    return model.eval(), size, int(payload["step"])


def episodes(
    color_set: str, n: int, size: int, seed: int, every: int = 5, **env_kwargs: object
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Frames (N*T, S, S, 3), positions (N*T, 4) and env index (N*T,) of ``n`` envs stepped at
    random until each has ended an episode (an env whose episode ends early goes on with a new one), every
    ``every``-th step; ``env_kwargs`` go to the env (e.g. ``target_px``)."""
    envs = make_vec("rlkd/PointReach-Pixels-v1", n, seed, image_size=size, color_set=color_set, **env_kwargs)
    rng = np.random.default_rng(seed)
    obs, _ = envs.reset(seed=seed)
    inner = envs.unwrapped
    frames, pos, done = [], [], np.zeros(n, bool)
    t = 0
    while not done.all():  # stop when every env has ended an episode
        if t % every == 0:  # consecutive frames are alike: every few steps gives more distinct ones
            frames.append(obs)
            pos.append(np.concatenate([inner.agent, inner.target], 1))
        t += 1
        obs, _, term, trunc, _ = envs.step(rng.uniform(-1, 1, (n, 2)).astype(np.float32))
        done |= term | trunc
    envs.close()
    steps = len(frames)
    episode = np.broadcast_to(np.arange(n), (steps, n))
    flat = lambda a: np.swapaxes(np.asarray(a), 0, 1).reshape(n * steps, *np.asarray(a).shape[2:])  # noqa: E731
    return flat(frames), flat(pos), flat(episode)


def r2(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """R^2 of each column."""
    return 1.0 - ((pred - truth) ** 2).sum(0) / ((truth - truth.mean(0)) ** 2).sum(0)


def linear_probe(x_fit: np.ndarray, y_fit: np.ndarray, x_test: np.ndarray) -> np.ndarray:
    """Least-squares affine map fitted on (x_fit, y_fit), applied to x_test."""
    w, *_ = np.linalg.lstsq(np.c_[x_fit, np.ones(len(x_fit))], y_fit, rcond=None)
    return np.c_[x_test, np.ones(len(x_test))] @ w


def mlp_probe(x_fit: np.ndarray, y_fit: np.ndarray, x_test: np.ndarray, steps: int = 1000) -> np.ndarray:
    """Two-hidden-layer MLP fitted full batch on standardised inputs, applied to x_test."""
    torch.manual_seed(0)
    mean, std = x_fit.mean(0), x_fit.std(0) + 1e-6
    xf = torch.as_tensor((x_fit - mean) / std, dtype=torch.float32)
    yf = torch.as_tensor(y_fit, dtype=torch.float32)
    net = nn.Sequential(nn.Linear(xf.shape[1], 64), nn.ELU(), nn.Linear(64, 64), nn.ELU(),
                        nn.Linear(64, yf.shape[1]))  # fmt: skip
    opt = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-3)
    for _ in range(steps):
        opt.zero_grad()
        ((net(xf) - yf) ** 2).mean().backward()
        opt.step()
    with torch.no_grad():
        return net(torch.as_tensor((x_test - mean) / std, dtype=torch.float32)).numpy()


@torch.no_grad()
def reconstructions(model: WorldModel, obs: np.ndarray, path: Path, count: int = 8) -> None:
    x = preprocess(torch.as_tensor(obs[:count]))[:, None]  # (count, 1, S, S, 3)
    embed, _, _ = model.encode(x, sample=False)
    post, _ = model.rssm.observe(embed, None, torch.ones(count, 1, dtype=torch.bool), sample=False)
    recon = (model.decoder(model.rssm.feat(post))[:, 0] + 0.5).clamp(0, 1).numpy()
    grid = np.concatenate([np.concatenate(list(obs[:count]), 1),
                           np.concatenate(list((recon * 255).astype(np.uint8)), 1)], 0)  # fmt: skip
    Image.fromarray(grid).resize((grid.shape[1] * 3, grid.shape[0] * 3), Image.NEAREST).save(path)


def probe(
    model: WorldModel, color_set: str, n: int, size: int, seed: int, **env_kwargs: object
) -> tuple[dict[str, dict[str, float]], np.ndarray]:
    """Held-out R^2 of each position from the teacher's z, for both probes (and the frames)."""
    obs, pos, episode = episodes(color_set, n, size, seed, **env_kwargs)
    with torch.no_grad():
        z = torch.cat([model.encode(preprocess(torch.as_tensor(chunk)), sample=False)[1]
                       for chunk in np.array_split(obs, max(1, len(obs) // 2048))]).numpy()  # fmt: skip
    fit = episode % 2 == 0  # even envs fit, odd envs test: both behaviours on each side
    out = {}
    for name, fn in (("linear", linear_probe), ("mlp", mlp_probe)):
        scores = r2(fn(z[fit], pos[fit], z[~fit]), pos[~fit])
        out[name] = dict(zip(TARGETS, map(float, scores), strict=True))
    return out, obs


def verdict(result: dict[str, dict[str, float]]) -> dict[str, float | bool]:
    """The target's and the agent's R^2 (mean of x, y; best probe) and whether the teacher holds it."""
    best = lambda a: max(np.mean([p[f"{a}_x"], p[f"{a}_y"]]) for p in result.values())  # noqa: E731
    target, agent = best("target"), best("agent")
    return {"target_r2": float(target), "agent_r2": float(agent),
            "holds_task": bool(target >= 0.5 and target >= 0.5 * agent)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run")
    parser.add_argument("--episodes", type=int, default=600, help="episodes (envs) per colour set")
    parser.add_argument("--seed", type=int, default=1000, help="env seed (the source data used others)")
    parser.add_argument("--out", help="output folder (default: the run folder)")
    parser.add_argument("--env-kwargs", default="{}", help='more env keywords, e.g. "{target_px: 14}"')
    args = parser.parse_args()
    env_kwargs = yaml.safe_load(args.env_kwargs) or {}
    torch.set_num_threads(1)
    out = Path(args.out or args.run)
    out.mkdir(parents=True, exist_ok=True)
    model, size, updates = load_teacher(args.run)
    result: dict = {"updates": updates}
    for k, color_set in enumerate(("train", "test")):
        scores, obs = probe(model, color_set, args.episodes, size, args.seed + k, **env_kwargs)
        result[color_set] = {**scores, **verdict(scores)}
        reconstructions(model, obs, out / f"teacher_{color_set}.png")
        print(color_set, json.dumps(result[color_set]))
    (out / "probe_teacher.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
