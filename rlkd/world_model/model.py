"""World-model networks and losses shared by DisWM pretraining and the online Dreamer agent.

The layout follows DreamerV2 as used by the official DisWM code (``qiwang067/DisWM``, built on
dreamer-torch) with its DMC defaults: a recurrent state-space model with a layer-normed GRU
deterministic path (``dyn_cell: gru_layer_norm``) and a *Gaussian* stochastic state
(``dyn_discrete: 0`` in ``configs.yaml``), a reward head (plus an optional continue head; DMC has
``pred_discount: False``), and one of three observation encoder/decoder pairs:

* DreamerV2's plain conv encoder and decoder (``beta_vae: False``, the official DreamerV2 baseline):
  the embedding is the flattened conv features, the decoder maps the RSSM feature to pixels;
* DisWM's beta-VAE pair (``beta_vae: True``): the reparameterised ``z`` (``z_dim`` = 20) is the
  embedding and the decoder passes through the same ``z_dim`` bottleneck;
* MLPs for vector observations ``Box(D,)`` (DreamerV2's ``mlp_keys`` encoder/decoder).

Shapes at module boundaries are written as comments: ``B`` batch, ``T`` time, ``Z`` z_dim,
``S`` stoch, ``D`` deter, ``F = S + D`` feature size, ``A`` action dim.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rlkd.core.config import TrainConfig, check_ranges
from rlkd.errors import UserError, describe_space
from rlkd.world_model.codecs import (
    IMAGE_SIZES,
    BetaVAEDecoder,
    BetaVAEEncoder,
    ConvDecoder,
    ConvEncoder,
    MLPDecoder,
    MLPEncoder,
    dense,
    preprocess,
)
from rlkd.world_model.rssm import RSSM, State, rssm_kl_loss


@dataclasses.dataclass
class WorldModelConfig(TrainConfig):
    """World-model fields shared by action-free pretraining and the online agent (paper sizes)."""

    image_size: int = 64
    """Side of the square RGB observations: 64 (the paper) or 32 (conv stacks without their first
    layer; pixel envs are resized to it)."""
    z_dim: int = 20
    """Size of the beta-VAE latent z, the RSSM's observation embedding in DisWM (paper: 20)."""
    beta: float = 0.015
    """Weight of the beta-VAE KL term added to the image loss (paper: 0.015)."""
    cnn_depth: int = 32
    """Channel multiplier of the convolutional encoder and decoder."""
    mlp_layers: int = 4
    """Hidden layers of the MLP encoder and decoder for vector observations (DreamerV2: 4 x 400)."""
    deter: int = 200
    """Size of the RSSM's deterministic GRU state (paper: 200)."""
    stoch: int = 50
    """Size of the RSSM's Gaussian stochastic state (paper: 50)."""
    hidden: int = 200
    """Hidden units of the RSSM's input/output layers."""
    units: int = 400
    """Hidden units of the reward, continue, actor, critic and vector encoder/decoder MLPs (paper: 400)."""
    dyn_cell: str = "gru_layer_norm"
    """RSSM cell: gru_layer_norm (official DMC config) or gru (dreamer-torch's GRU without the norm)."""
    min_std: float = 0.1
    """Lower bound of the RSSM's Gaussian standard deviation."""
    kl_balance: float = 0.8
    """KL balancing: weight of the term that trains the prior (DreamerV2: 0.8)."""
    kl_free: float = 1.0
    """Free nats: the mean RSSM KL is clipped below at this value (DreamerV2 DMC: 1.0)."""
    model_lr: float = 3e-4
    """Adam learning rate of the world model."""
    grad_clip: float = 100.0
    """Gradient-norm clip of every optimizer."""
    batch_size: int = 50
    """Sequences per training batch (paper: 50)."""
    batch_length: int = 50
    """Length of each training sequence (paper: 50)."""
    official_sampler: bool = False
    """Draw each training window as the official code (``tools.sample_episodes``): a finished episode
    uniformly, then a start inside it, so windows never cross episodes (rlkd: uniform over all
    starts, weighting episodes by length; online, windows may cross episode ends)."""

    def validate(self) -> None:
        super().validate()
        if self.image_size not in IMAGE_SIZES:
            raise UserError(
                f"--image-size must be one of {list(IMAGE_SIZES)} (the conv stacks are built for those), "
                f"got {self.image_size}"
            )
        sizes = ("z_dim", "deter", "stoch", "hidden", "units", "cnn_depth", "mlp_layers", "batch_size")
        positive = (*sizes, "batch_length", "min_std", "model_lr", "grad_clip")
        check_ranges(self, positive=positive, non_negative=("kl_free", "beta"), unit=("kl_balance",))
        if self.dyn_cell not in ("gru", "gru_layer_norm"):
            raise UserError(f"--dyn-cell must be gru or gru_layer_norm, got {self.dyn_cell!r}")


MODEL_KEYS = (
    "image_size", "z_dim", "cnn_depth", "mlp_layers", "deter", "stoch", "hidden", "units", "dyn_cell",
    "min_std",
)  # fmt: skip
"""Config fields that fix the world model's parameter shapes (checked when loading a teacher)."""


# ----------------------------------------------------------------------------- losses


def vae_kl(mu: Tensor, logvar: Tensor) -> Tensor:
    """Closed-form KL(N(mu, exp(logvar)) || N(0, I)), summed over the last (latent) axis.

    Args:
        mu: (..., Z) posterior means.
        logvar: (..., Z) posterior log-variances.

    Returns:
        (...) KL per sample (the beta-VAE term of Higgins et al. 2017).
    """
    return -0.5 * (1.0 + logvar - mu.square() - logvar.exp()).sum(-1)


class _SumSquaredError(torch.autograd.Function):
    """sum((pred - target)^2) with a one-multiply backward; ``target`` gets no gradient."""

    @staticmethod
    def forward(ctx: Any, pred: Tensor, target: Tensor) -> Tensor:
        diff = pred - target
        ctx.save_for_backward(diff)
        return diff.square().sum()

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        (diff,) = ctx.saved_tensors
        return diff * (2.0 * grad), None


def sum_squared_error(pred: Tensor, target: Tensor) -> Tensor:
    """Scalar sum of squared errors, differentiable in ``pred`` only.

    The same value and gradient as ``(pred - target).square().sum()``, in one pass each way instead
    of a chain of ops over the whole image batch (docs/diswm.md, Speed).
    """
    return _SumSquaredError.apply(pred, target)


@dataclasses.dataclass(frozen=True)
class Distillation:
    """How DisWM distils a teacher encoder into the student (``WorldModel.loss``).

    Attributes:
        teacher: The pretrained beta-VAE encoder.
        samples: Distil the reparameterised z of both encoders, as the official code
            (``models.py``: ``embed``/``embed_dis`` are ``BetaVAE_H_Encoder``'s ``z_vae``); False uses
            the posterior means (deterministic: identical encoders give exactly 0).
        per_step: Average the KL over batch and time; False is the official
            ``reduction='batchmean'`` on (B, T, Z), which divides by B only (sums over time).
        drift: Let the distillation gradient reach the teacher, as the official code does.
    """

    teacher: nn.Module
    samples: bool = True
    per_step: bool = False
    drift: bool = False


def distill_loss(student: Tensor, teacher: Tensor, per_step: bool = False) -> Tensor:
    """DisWM latent distillation: KL(softmax(teacher) || softmax(student)) over the latent axis.

    Official code: ``models.py`` ``kl_loss_distillation``: ``F.kl_div(log_softmax(student),
    softmax(teacher), reduction='batchmean')``, which on (B, T, Z) latents sums the per-step KL
    over T and averages it over B. Gradients reach ``teacher`` too unless it is detached (the
    official code does not detach it).

    Args:
        student: (B, T, Z) student latents.
        teacher: (B, T, Z) teacher latents.
        per_step: Average over B and T instead (T times smaller than the official value).

    Returns:
        Scalar KL.
    """
    log_p_student = F.log_softmax(student, dim=-1)
    log_p_teacher = F.log_softmax(teacher, dim=-1)
    kl = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(-1)  # (B, T)
    return kl.mean() if per_step else kl.sum() / kl.shape[0]


def obs_kind(space: Any, env_id: str = "the env") -> str:
    """``"image"`` for uint8 Box(S, S, 3) with S in ``IMAGE_SIZES``, ``"vector"`` for float Box(D,);
    else :class:`UserError`."""
    shape, dtype = tuple(getattr(space, "shape", None) or ()), getattr(space, "dtype", None)
    square = len(shape) == 3 and shape[0] == shape[1] and shape[0] in IMAGE_SIZES and shape[2] == 3
    if isinstance(space, gym.spaces.Box) and square and dtype == np.uint8:
        return "image"
    if isinstance(space, gym.spaces.Box) and len(shape) == 1 and np.issubdtype(dtype, np.floating):
        return "vector"
    raise UserError(
        f"the world model supports uint8 Box(64, 64, 3) or Box(32, 32, 3) pixel observations (conv encoder) "
        "or float Box(D,) "
        f"vector observations (MLP encoder); {env_id} has {describe_space(space)}: use a *-Pixels-v0, "
        "rlkd/DMC-* or "
        "vector-observation env"
    )


class WorldModel(nn.Module):
    """Encoder + RSSM + decoder + reward (+ continue) heads.

    Args:
        cfg: Any :class:`WorldModelConfig` (sizes are read from it).
        action_dim: Action size; 0 builds the action-free model used for pretraining.
        obs_shape: ``(S, S, 3)`` pixels (S = 64 or 32), ``(D,)`` for vector observations.
        beta_vae: DisWM's beta-VAE encoder/decoder (pixels only) instead of DreamerV2's plain ones.
        pred_continue: Add a continue (discount) head (off for DMC, as ``pred_discount: False``).
    """

    def __init__(
        self,
        cfg: WorldModelConfig,
        action_dim: int,
        obs_shape: tuple[int, ...] = (64, 64, 3),
        beta_vae: bool = False,
        pred_continue: bool = False,
    ) -> None:
        super().__init__()
        self.cfg, self.beta_vae, self.obs_shape = cfg, beta_vae, tuple(obs_shape)
        feat = cfg.deter + cfg.stoch
        if len(obs_shape) == 1:
            if beta_vae:
                raise UserError("the beta-VAE encoder (diswm, pretrain, naive fine-tuning) needs pixels")
            self.encoder: nn.Module = MLPEncoder(obs_shape[0], cfg.units, cfg.mlp_layers)
            self.decoder: nn.Module = MLPDecoder(feat, obs_shape[0], cfg.units, cfg.mlp_layers)
            embed = self.encoder.embed_size
        elif beta_vae:
            self.encoder = BetaVAEEncoder(cfg.z_dim, cfg.cnn_depth, obs_shape[0])
            self.decoder = BetaVAEDecoder(feat, cfg.z_dim, cfg.cnn_depth, obs_shape[0])
            embed = cfg.z_dim
        else:
            self.encoder = ConvEncoder(cfg.cnn_depth, obs_shape[0])
            self.decoder = ConvDecoder(feat, cfg.cnn_depth, obs_shape[0])
            embed = self.encoder.embed_size
        self.rssm = RSSM(embed, action_dim, cfg.deter, cfg.stoch, cfg.hidden, cfg.min_std, cfg.dyn_cell)
        self.reward = dense(feat, cfg.units, 2, 1) if action_dim > 0 else None
        self.cont = dense(feat, cfg.units, 3, 1) if pred_continue else None

    def encode(self, x: Tensor, sample: bool = True) -> tuple[Tensor, Tensor | None, Tensor | None]:
        """Preprocessed x (..., *obs_shape) -> (embedding (..., E), beta-VAE mu, logvar (..., Z) or None)."""
        if self.beta_vae:
            mu, logvar, z = self.encoder(x, sample=sample)
            return z, mu, logvar
        return self.encoder(x), None, None

    def loss(
        self, batch: dict[str, Tensor], distill: Distillation | None = None, sample: bool = True
    ) -> tuple[dict[str, Tensor], State, dict[str, Tensor]]:
        """World-model losses on a batch of sequences.

        Args:
            batch: ``obs`` (B, T, *obs_shape), ``action`` (B, T, A) (ignored when action-free),
                ``reward`` (B, T), ``is_first`` bool (B, T), ``is_terminal`` bool (B, T).
            distill: The DisWM teacher and how to distil it, or None (no ``distill`` loss; callers
                pass None while eta is 0).
            sample: Sample the RSSM posterior (False: its mean, :meth:`RSSM.observe`).

        Returns:
            Unscaled losses (``image``: the observation NLL, plus ``beta * vae_kl`` with the beta-VAE
            as in the official code; ``reward``, ``kl``, ``distill``, optionally ``continue``),
            posterior states (B, T, .) and detached metrics (``image_nll``, ``vae_kl``,
            ``kl_value``, ``reward_mse``, ``recon``).
        """
        x = preprocess(batch["obs"])  # (B, T, *obs_shape): the encoder's input and the decoder's target
        embed, mu, logvar = self.encode(x)  # (B, T, E)
        action = batch["action"] if self.rssm.action_dim > 0 else None
        post, prior = self.rssm.observe(embed, action, batch["is_first"], sample=sample)
        feat = self.rssm.feat(post)  # (B, T, F)
        recon = self.decoder(feat)  # (B, T, *obs_shape)
        # Unit-variance Gaussian NLL summed over the observation (constant dropped), mean over (B, T).
        image_nll = 0.5 * sum_squared_error(recon, x) / (x.shape[0] * x.shape[1])
        losses: dict[str, Tensor] = {"image": image_nll}
        metrics = {"image_nll": image_nll.detach()}
        if mu is not None:
            kl_vae = vae_kl(mu, logvar).mean()
            losses["image"] = image_nll + self.cfg.beta * kl_vae
            metrics["vae_kl"] = kl_vae.detach()
        losses["kl"], kl_value = rssm_kl_loss(post, prior, self.cfg.kl_balance, self.cfg.kl_free)
        metrics["kl_value"] = kl_value.mean()
        if self.reward is not None:
            reward_mse = (self.reward(feat).squeeze(-1) - batch["reward"]).square().mean()
            # Unit-variance Gaussian NLL of the reward (dreamer-torch DenseHead), constant dropped.
            losses["reward"] = 0.5 * reward_mse
            metrics["reward_mse"] = reward_mse.detach()
        if self.cont is not None:
            cont_target = (~batch["is_terminal"]).to(torch.float32)
            losses["continue"] = F.binary_cross_entropy_with_logits(self.cont(feat).squeeze(-1), cont_target)
        if distill is not None:
            with torch.set_grad_enabled(distill.drift):
                t_mu, _, t_z = distill.teacher(x, sample=distill.samples)
            student, teacher = (embed, t_z) if distill.samples else (mu, t_mu)
            losses["distill"] = distill_loss(student, teacher, distill.per_step)
        post = {k: v.detach() for k, v in post.items()}
        return losses, post, {**metrics, "recon": recon.detach()}


def to_torch(batch: dict[str, Any], device: str | torch.device) -> dict[str, Tensor]:
    """Numpy batch -> tensors on ``device`` (images stay uint8 until the encoder)."""
    return {k: torch.as_tensor(v, device=device) for k, v in batch.items()}


def reconstruction_grid(image: Tensor, recon: Tensor, frames: int = 8) -> Tensor:
    """First sequence's frames over their reconstructions for TensorBoard.

    image uint8 (B, T, H, W, 3), recon (B, T, H, W, 3) in [-0.5, 0.5] -> (2 * frames, 3, H, W) in [0, 1].
    """
    truth = image[0, :frames].float() / 255.0
    pred = (recon[0, :frames] + 0.5).clamp(0, 1)
    return torch.cat([truth, pred]).permute(0, 3, 1, 2)


def model_meta(cfg: WorldModelConfig) -> dict[str, Any]:
    """The shape-defining fields of ``cfg`` (saved in checkpoints, compared on load)."""
    return {k: getattr(cfg, k) for k in MODEL_KEYS}


def check_compatible(
    saved: dict[str, Any], cfg: WorldModelConfig, source: str, keys: tuple[str, ...] = MODEL_KEYS
) -> None:
    """Raise :class:`UserError` when a pretrained model's ``keys`` fields differ from ``cfg``'s."""
    for key in keys:
        if saved.get(key) != getattr(cfg, key):
            raise UserError(
                f"pretrained model {source} has {key}={saved.get(key)!r} but this run uses "
                f"{key}={getattr(cfg, key)!r}; pass --{key.replace('_', '-')} {saved.get(key)} "
                "or pretrain again"
            )
