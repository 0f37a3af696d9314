"""Transfer from an action-free pretraining run (``rlkd pretrain``): DisWM's teacher and naive
fine-tuning's initialisation. ``cfg`` is a Dreamer config (``mode``, ``pretrained``, the model sizes)."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from rlkd.core.run import Run
from rlkd.errors import UserError
from rlkd.world_model.codecs import BetaVAEEncoder
from rlkd.world_model.model import check_compatible


def load_pretrained(cfg: Any) -> dict[str, Tensor]:
    """Load the world-model weights of a pretrain run and check they fit ``cfg``."""
    run = Run.open(cfg.pretrained)
    payload = run.load_checkpoint("latest")
    if payload.get("agent") != "pretrain":
        raise UserError(
            f"--pretrained {cfg.pretrained} is a {payload.get('agent')!r} run; give an `rlkd pretrain` run"
        )
    meta = payload["state"].get("meta", {})
    keys = ("image_size", "z_dim", "cnn_depth") if cfg.mode == "distill" else tuple(meta)
    check_compatible(meta, cfg, cfg.pretrained, keys)
    return payload["state"]["model"]


def make_teacher(cfg: Any, weights: dict[str, Tensor]) -> BetaVAEEncoder:
    """DisWM's frozen teacher: the pretrained beta-VAE encoder (the only part the official
    distillation mode loads, ``dreamer.py`` l. 440-441)."""
    teacher = BetaVAEEncoder(cfg.z_dim, cfg.cnn_depth, cfg.image_size)
    teacher.load_state_dict({k[len("encoder.") :]: v for k, v in weights.items() if k.startswith("encoder.")})
    return teacher.to(cfg.device)


def naive_init(wm: nn.Module, weights: dict[str, Tensor]) -> None:
    """Copy the pretrained encoder, RSSM and decoder into the world model ``wm`` (naive fine-tuning).

    The action-free RSSM's input layer has no action columns: those keep the student's random
    initialisation, as in the official code, whose pretraining pads actions with zeros so that
    their columns never get a gradient and stay at their initial values.
    """
    own = wm.state_dict()
    for key, value in weights.items():
        if key not in own:
            continue
        if key == "rssm.img_in.0.weight" and own[key].shape != value.shape:
            own[key][:, : value.shape[1]] = value  # stoch columns first, then the actions'
        else:
            own[key] = value
    wm.load_state_dict(own)
