"""Offline action-free pretraining of the DisWM teacher (Wang et al., ICCV 2025, Sec. 3.1).

A beta-VAE encoder, an action-free RSSM and a decoder are trained on distracting videos with
``image NLL + beta * VAE KL + RSSM KL (balance 0.8, free nats 1.0)``; the image passes through the
``z_dim`` bottleneck in both directions. The checkpoint's ``state["model"]`` is what
``rlkd train --agent diswm --pretrained RUN_DIR`` loads as its frozen teacher.

Data-parallel over ranks (``--nproc``, torchrun): each rank samples ``batch_size`` sequences from
its own share of the episode files, gradients are averaged, rank 0 alone writes.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any, NoReturn

import torch

from rlkd.core import distributed
from rlkd.core.config import check_ranges, read_presets
from rlkd.core.guard import UpdateGuard
from rlkd.core.run import Progress, Run, load_state, rng_state, seed_everything, set_rng_state
from rlkd.errors import UserError
from rlkd.nn.optim import FusedAdam, clip_grad_norm_
from rlkd.world_model.datasets import SequenceDataset, read_manifest
from rlkd.world_model.model import WorldModel, WorldModelConfig, model_meta, reconstruction_grid, to_torch


@dataclasses.dataclass
class PretrainConfig(WorldModelConfig):
    """Action-free pretraining; ``total_steps`` counts gradient updates here."""

    agent: str = "pretrain"
    """Always pretrain."""
    data: str = ""
    """Dataset folder written by `rlkd collect`, or a folder of video files (mp4, webm, avi, mkv, mov,
    gif) read as action-free episodes (required)."""
    video_episode_length: int = 500
    """Video folders: frames per episode cut from each file (0: a whole file is one episode); a last
    piece shorter than batch_length is dropped. 500: a DMC episode at action repeat 2."""
    total_steps: int = 20_000
    """Gradient updates to run (the official loop does 10 passes of range(0, 100000, 50): 20,000)."""
    checkpoint_interval: int = 10_000
    """Write a checkpoint every this many updates (and at the end)."""
    log_interval: int = 100
    """Log scalars every this many updates."""
    image_log_interval: int = 5_000
    """Log reconstruction images every this many updates (0: never)."""
    sample_posterior: bool = False
    """Sample the RSSM posterior; off uses its mean, as the official action-free code (``obs_step_af``)."""

    def validate(self) -> None:
        super().validate()
        if not self.data:
            raise UserError("--data is required: a folder made by `rlkd collect` or a folder of videos")
        check_ranges(self, non_negative=("video_episode_length",))


PRESETS = read_presets(Path(__file__).with_name("presets") / "pretrain.yaml")
"""Named field overrides (``--preset``), in ``agents/presets/pretrain.yaml`` with where each comes from."""


def pretrain(cfg: PretrainConfig, run: Run | None, checkpoint: dict | None) -> None:
    """Train the action-free teacher; resumes exactly from ``checkpoint`` when given. ``run`` is
    None on ranks other than 0 of a distributed job."""
    try:
        _pretrain(cfg, run, checkpoint)
    finally:
        if run is not None:
            run.close()  # flushes the scalars written so far, whatever stopped it


def _pretrain(cfg: PretrainConfig, run: Run | None, checkpoint: dict | None) -> None:
    manifest = read_manifest(Path(cfg.data))
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    world = distributed.world()
    seed_everything(cfg.seed)
    data = SequenceDataset(cfg.data, cfg.batch_length, cfg.batch_size, cfg.seed + world.rank,
                           image_size=cfg.image_size, shard=(world.rank, world.size),
                           video_episode_length=cfg.video_episode_length,
                           official_sampler=cfg.official_sampler)  # fmt: skip
    device = distributed.device(cfg.device)
    obs_shape = (cfg.image_size, cfg.image_size, 3)
    model = WorldModel(cfg, action_dim=0, obs_shape=obs_shape, beta_vae=True).to(device)
    distributed.broadcast_module_(model)
    if world.rank:  # rank 0's weights, each rank's own sampling noise
        seed_everything(cfg.seed + 1000 * world.rank)
    opt = FusedAdam(model.parameters(), lr=cfg.model_lr, eps=1e-5)
    guard = UpdateGuard(cfg.on_nonfinite)
    update = 0
    if checkpoint is not None:
        st = checkpoint["state"]
        load_state(model, st["model"], "world model")
        load_state(opt, st["opt"], "optimizer")
        data_rng, rng = (st["data_rng"], st["rng"])
        if "rng_ranks" in st:
            data_rng, rng = st["data_rng_ranks"][world.rank], st["rng_ranks"][world.rank]
        data.rng.bit_generator.state = json.loads(data_rng)
        set_rng_state(rng)
        update = int(checkpoint["step"])
        guard.load_state_dict(st.get("guard", {}))
    if run is not None:
        run.start()
    progress = Progress(cfg.total_steps, update, "pretrain", enabled=world.main)
    t0, u0 = time.time(), update
    while update < cfg.total_steps:
        batch = to_torch(data.sample(), device)
        batch["obs"] = batch.pop("image")
        losses, _, metrics = model.loss(batch, sample=cfg.sample_posterior)
        total = sum(losses.values())
        opt.zero_grad()
        total.backward()
        losses = average(model, losses)
        norm = clip_grad_norm_(opt.params, cfg.grad_clip)
        guard.step = update
        if guard.ok(losses, {"world model": norm}):
            opt.step()
        update += 1
        if run is not None and (update % cfg.log_interval == 0 or update == cfg.total_steps):
            ups = (update - u0) / max(time.time() - t0, 1e-9)
            logged = {
                # The losses under losses/, as Dreamer logs the same terms (losses/image, losses/kl).
                "losses/image": losses["image"].detach(), "losses/kl": losses["kl"].detach(),
                "world_model/vae_kl": metrics["vae_kl"], "world_model/kl_value": metrics["kl_value"],
                "charts/updates_per_s": ups,
            }  # fmt: skip
            if guard.mode == "skip":
                logged["charts/skipped_updates"] = guard.skipped
            run.log_scalars(update, logged)
            progress.update(update, loss=float(sum(losses.values())), ups=ups)
        if run is not None and cfg.image_log_interval and update % cfg.image_log_interval == 0:
            grid = reconstruction_grid(batch["obs"], metrics["recon"])
            run.writer.add_images("world_model/reconstruction", grid, update)
        if update % cfg.checkpoint_interval == 0 or update == cfg.total_steps:
            # Every rank's sampler and RNG states, so each continues its own streams on resume.
            ranks = distributed.gather((json.dumps(data.rng.bit_generator.state), rng_state()))
            if run is None:
                continue
            data_rngs, rngs = zip(*ranks, strict=True)
            state = {
                "model": model.state_dict(), "opt": opt.state_dict(), "rng": rngs[0],
                "data_rng": data_rngs[0], "meta": model_meta(cfg),
                "guard": guard.state_dict(),
                "dataset": {"env_id": manifest.get("env_id", ""), "color_set": manifest.get("color_set", "")},
            }  # fmt: skip
            if world.size > 1:
                state |= {"rng_ranks": list(rngs), "data_rng_ranks": list(data_rngs)}
            run.save_checkpoint(update, state, keep=cfg.keep_checkpoints)
    progress.close()


def average(model: WorldModel, losses: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Average the gradients and the loss terms over the ranks (one collective); returns the job's
    loss terms (detached). One process: the terms as they are."""
    if distributed.world().size == 1:
        return {k: v.detach() for k, v in losses.items()}
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    values = torch.stack([v.detach() for v in losses.values()])
    distributed.average_([*(p.grad for p in params), values])
    return dict(zip(losses, values.unbind(), strict=True))


def finalize(cfg: PretrainConfig) -> PretrainConfig:
    """Name the run after the env the dataset was recorded on (from its manifest)."""
    env_id = read_manifest(Path(cfg.data)).get("env_id") or Path(cfg.data).name or cfg.env_id
    return dataclasses.replace(cfg, env_id=env_id)


# The agent-module protocol (rlkd.agents), so `rlkd pretrain` and `rlkd resume` treat a pretraining
# run like any other run.
CONFIG = PretrainConfig
DISTRIBUTED = True
train = pretrain


def label(cfg: PretrainConfig) -> str:
    """Run-folder label."""
    return "pretrain"


def env_kwargs_for(cfg: PretrainConfig) -> dict[str, Any]:
    """The env keywords of the dataset's env (pretraining itself steps no env)."""
    return dict(cfg.env_kwargs)


def load_policy(run: Any, checkpoint: dict[str, Any], device: str) -> NoReturn:
    """Pretraining learns no policy: every command that needs one says so."""
    raise UserError(
        f"{run.path} is a pretrain run: an action-free world model has no policy to evaluate; "
        "give a run made by `rlkd train`"
    )
