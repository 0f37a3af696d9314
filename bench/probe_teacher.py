"""What a pretrained DisWM teacher's latent holds about point reach, in the source and target colours.

Usage::

    python bench/probe_teacher.py PRETRAIN_RUN [--frames 3000] [--out DIR]

For each colour set ("train", the source videos' colours, and "test", the transfer target's) it
draws random point-reach frames (32x32 or 64x64, as the teacher was trained), encodes them with
the teacher's beta-VAE encoder and fits a least-squares linear map from the latent means to the
agent's and the target's positions on half of the frames; the R^2 on the other half says how much
of each position the latent holds linearly (1: all, 0: nothing). It also writes reconstructions
through the whole action-free model (encoder, one posterior step from the zero state, decoder) of
a few frames of each set as ``teacher_<set>.png`` (top row: frames, bottom row: reconstructions).
Prints and writes ``probe_teacher.json`` in ``--out`` (default: the run folder).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from rlkd.agents.pretrain import PretrainConfig
from rlkd.envs import make_vec
from rlkd.envs.reach import PointReachVectorEnv

from rlkd.core.run import Run
from rlkd.world_model.codecs import preprocess
from rlkd.world_model.model import WorldModel


def load_teacher(run_dir: str) -> tuple[WorldModel, int]:
    """The pretrained action-free world model of ``run_dir`` and its image size."""
    payload = Run.open(run_dir).load_checkpoint("latest")
    meta = payload["state"]["meta"]
    cfg = PretrainConfig(**{k: v for k, v in meta.items() if k in PretrainConfig.__dataclass_fields__})
    size = int(meta["image_size"])
    model = WorldModel(cfg, action_dim=0, obs_shape=(size, size, 3), beta_vae=True)
    model.load_state_dict(payload["state"]["model"])
    return model.eval(), size


def frames(color_set: str, n: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``n`` frames (n, S, S, 3) of random states and their (agent x, y, target x, y) (n, 4)."""
    envs = make_vec("rlkd/PointReach-Pixels-v1", n, seed, image_size=size, color_set=color_set)
    obs, _ = envs.reset(seed=seed)
    inner: PointReachVectorEnv = envs.unwrapped
    pos = np.concatenate([inner.agent, inner.target], 1)
    envs.close()
    return obs, pos


def r2(latent: np.ndarray, target: np.ndarray) -> list[float]:
    """Held-out R^2 of a least-squares affine map latent -> each target column (first half fits)."""
    x = np.concatenate([latent, np.ones((len(latent), 1))], 1)
    half = len(x) // 2
    w, *_ = np.linalg.lstsq(x[:half], target[:half], rcond=None)
    pred, truth = x[half:] @ w, target[half:]
    return (1.0 - ((pred - truth) ** 2).sum(0) / ((truth - truth.mean(0)) ** 2).sum(0)).tolist()


@torch.no_grad()
def reconstructions(model: WorldModel, obs: np.ndarray, path: Path, count: int = 8) -> None:
    x = preprocess(torch.as_tensor(obs[:count]))[:, None]  # (count, 1, S, S, 3)
    embed, _, _ = model.encode(x, sample=False)
    post, _ = model.rssm.observe(embed, None, torch.ones(count, 1, dtype=torch.bool), sample=False)
    recon = (model.decoder(model.rssm.feat(post))[:, 0] + 0.5).clamp(0, 1).numpy()
    grid = np.concatenate([np.concatenate(list(obs[:count]), 1),
                           np.concatenate(list((recon * 255).astype(np.uint8)), 1)], 0)  # fmt: skip
    Image.fromarray(grid).resize((grid.shape[1] * 3, grid.shape[0] * 3), Image.NEAREST).save(path)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("run")
    parser.add_argument("--frames", type=int, default=3000)
    parser.add_argument("--out", help="output folder (default: the run folder)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out or args.run)
    out.mkdir(parents=True, exist_ok=True)
    model, size = load_teacher(args.run)
    result = {}
    for seed, color_set in enumerate(("train", "test")):
        obs, pos = frames(color_set, args.frames, size, seed)
        with torch.no_grad():
            mu = model.encode(preprocess(torch.as_tensor(obs)), sample=False)[1].numpy()
        scores = r2(mu, pos)
        result[color_set] = {"agent_x": scores[0], "agent_y": scores[1], "target_x": scores[2],
                             "target_y": scores[3]}  # fmt: skip
        reconstructions(model, obs, out / f"teacher_{color_set}.png")
        print(color_set, {k: round(v, 3) for k, v in result[color_set].items()})
    (out / "probe_teacher.json").write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
