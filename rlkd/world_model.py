"""World-model networks and losses shared by DisWM pretraining and the online Dreamer agent.

The layout follows DreamerV2 as used by the official DisWM code (``qiwang067/DisWM``, built on
dreamer-torch) with its DMC defaults: a beta-VAE convolutional encoder whose reparameterised
``z`` (``z_dim`` = 20) is the RSSM's observation embedding, a recurrent state-space model with a
GRU deterministic path and a *Gaussian* stochastic state (``dyn_discrete: 0`` in ``configs.yaml``),
a decoder that maps the RSSM feature back through the ``z_dim`` bottleneck to pixels, and a
reward head (plus an optional continue head; DMC has ``pred_discount: False``).

Shapes at module boundaries are written as comments: ``B`` batch, ``T`` time, ``Z`` z_dim,
``S`` stoch, ``D`` deter, ``F = S + D`` feature size, ``A`` action dim.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from rlkd.config import TrainConfig
from rlkd.errors import UserError

State = dict[str, Tensor]
"""RSSM state: ``mean``, ``std``, ``stoch`` (..., S) and ``deter`` (..., D)."""


@dataclasses.dataclass
class WorldModelConfig(TrainConfig):
    """World-model fields shared by action-free pretraining and the online agent (paper sizes)."""

    image_size: int = 64
    """Side of the square RGB observations; the beta-VAE conv stack supports 64 only (as the paper)."""
    z_dim: int = 20
    """Size of the beta-VAE latent z, the RSSM's observation embedding (paper: 20)."""
    beta: float = 0.015
    """Weight of the beta-VAE KL term added to the image loss (paper: 0.015)."""
    cnn_depth: int = 32
    """Channel multiplier of the convolutional encoder and decoder."""
    deter: int = 200
    """Size of the RSSM's deterministic GRU state (paper: 200)."""
    stoch: int = 50
    """Size of the RSSM's Gaussian stochastic state (paper: 50)."""
    hidden: int = 200
    """Hidden units of the RSSM's input/output layers."""
    units: int = 400
    """Hidden units of the reward, continue, actor and critic MLPs (paper: 400)."""
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

    def validate(self) -> None:
        super().validate()
        if self.image_size != 64:
            raise UserError(
                f"--image-size must be 64 (the beta-VAE conv stack is built for 64x64), got {self.image_size}"
            )
        for name in ("z_dim", "deter", "stoch", "hidden", "units", "cnn_depth", "batch_size", "batch_length"):
            if getattr(self, name) <= 0:
                raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if not 0.0 <= self.kl_balance <= 1.0:
            raise UserError(f"--kl-balance must be in [0, 1], got {self.kl_balance}")
        if self.beta < 0:
            raise UserError(f"--beta must be non-negative, got {self.beta}")


MODEL_KEYS = ("image_size", "z_dim", "cnn_depth", "deter", "stoch", "hidden", "units", "min_std")
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


def distill_loss(student: Tensor, teacher: Tensor) -> Tensor:
    """DisWM latent distillation: KL(softmax(teacher) || softmax(student)) over the latent axis.

    Official code: ``models.py`` ``kl_loss_distillation`` (``F.kl_div(log_softmax(student),
    softmax(teacher))``). We average over every leading axis (per-sample KL); the official
    ``reduction='batchmean'`` on (B, T, Z) tensors divides by B only, i.e. also sums over time.

    Args:
        student: (..., Z) student latents (receive gradients).
        teacher: (..., Z) teacher latents (treated as constants).

    Returns:
        Scalar mean KL.
    """
    log_p_student = F.log_softmax(student, dim=-1)
    log_p_teacher = F.log_softmax(teacher.detach(), dim=-1)
    return (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(-1).mean()


def gauss_kl(mean_a: Tensor, std_a: Tensor, mean_b: Tensor, std_b: Tensor) -> Tensor:
    """KL(N(a) || N(b)) of diagonal Gaussians, summed over the last axis."""
    var_ratio = (std_a / std_b).square()
    t1 = ((mean_a - mean_b) / std_b).square()
    return 0.5 * (var_ratio + t1 - 1.0 - var_ratio.log()).sum(-1)


def rssm_kl_loss(post: State, prior: State, balance: float, free: float) -> tuple[Tensor, Tensor]:
    """DreamerV2 KL balancing with free nats (``networks.RSSM.kl_loss``, ``kl_forward: False``).

    ``balance`` weights the term whose gradient trains the prior; ``1 - balance`` the one that
    regularises the posterior. Free nats clip each *mean* KL from below, as DreamerV2 does.

    Returns:
        (loss scalar, KL value (B, T) without stop-gradients for logging).
    """
    value_post = gauss_kl(post["mean"], post["std"], prior["mean"].detach(), prior["std"].detach())
    value_prior = gauss_kl(post["mean"].detach(), post["std"].detach(), prior["mean"], prior["std"])
    free_t = value_post.new_tensor(free)
    loss = (1.0 - balance) * torch.maximum(value_post.mean(), free_t) + balance * torch.maximum(
        value_prior.mean(), free_t
    )
    return loss, value_post.detach()


# ----------------------------------------------------------------------------- networks


def mlp(inp: int, units: int, layers: int, out: int) -> nn.Sequential:
    """``layers`` ELU hidden layers of ``units`` followed by a linear output."""
    mods: list[nn.Module] = []
    for i in range(layers):
        mods += [nn.Linear(inp if i == 0 else units, units), nn.ELU()]
    mods.append(nn.Linear(units if layers else inp, out))
    return nn.Sequential(*mods)


def preprocess(image: Tensor) -> Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [-0.5, 0.5] (dreamer-torch convention)."""
    return image.to(torch.float32).div_(255.0).sub_(0.5).movedim(-1, -3)


class BetaVAEEncoder(nn.Module):
    """Convolutional beta-VAE encoder (the official ``BetaVAE_H_Encoder`` layout for 64x64).

    Input (..., 64, 64, 3) uint8; output ``mu``, ``logvar`` and reparameterised ``z``, each (..., Z).
    """

    def __init__(self, z_dim: int, depth: int = 32) -> None:
        super().__init__()
        self.z_dim = z_dim
        d = depth
        self.convs = nn.Sequential(
            nn.Conv2d(3, d, 4, 2, 1), nn.ELU(),  # 32x32
            nn.Conv2d(d, d, 4, 2, 1), nn.ELU(),  # 16x16
            nn.Conv2d(d, 2 * d, 4, 2, 1), nn.ELU(),  # 8x8
            nn.Conv2d(2 * d, 2 * d, 4, 2, 1), nn.ELU(),  # 4x4
            nn.Conv2d(2 * d, 8 * d, 4, 1), nn.ELU(),  # 1x1
            nn.Flatten(),
        )  # fmt: skip
        # oneDNN's convolutions run ~1.7x faster channels-last at depth 8 on CPU and break even
        # at the paper's depth 32 (bench/bench_diswm.py); preprocess() already yields NHWC memory.
        self.convs.to(memory_format=torch.channels_last)
        self.head = nn.Linear(8 * d, 2 * z_dim)

    def forward(self, image: Tensor, sample: bool = True) -> tuple[Tensor, Tensor, Tensor]:
        lead = image.shape[:-3]
        x = preprocess(image).reshape(-1, 3, *image.shape[-3:-1])
        mu, logvar = self.head(self.convs(x)).reshape(*lead, 2 * self.z_dim).chunk(2, -1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample else mu
        return mu, logvar, z


class BetaVAEDecoder(nn.Module):
    """Feature (..., F) -> z bottleneck (..., Z) -> image mean (..., 64, 64, 3) in [-0.5, 0.5] units."""

    def __init__(self, feat_size: int, z_dim: int, depth: int = 32) -> None:
        super().__init__()
        d = depth
        self.to_z = nn.Sequential(nn.Linear(feat_size, z_dim), nn.ELU())
        self.fc = nn.Sequential(nn.Linear(z_dim, 8 * d), nn.ELU())
        self.deconvs = nn.Sequential(
            nn.ConvTranspose2d(8 * d, 2 * d, 4), nn.ELU(),  # 4x4
            nn.ConvTranspose2d(2 * d, 2 * d, 4, 2, 1), nn.ELU(),  # 8x8
            nn.ConvTranspose2d(2 * d, d, 4, 2, 1), nn.ELU(),  # 16x16
            nn.ConvTranspose2d(d, d, 4, 2, 1), nn.ELU(),  # 32x32
            nn.ConvTranspose2d(d, 3, 4, 2, 1),  # 64x64
        )  # fmt: skip
        # Channels-last transposed convolutions: 1.6-1.8x faster forward + backward on CPU at
        # both depth 8 and 32, and the NHWC output is already the (..., 64, 64, 3) frame layout.
        self.deconvs.to(memory_format=torch.channels_last)
        self.depth = d

    def forward(self, feat: Tensor) -> Tensor:
        lead = feat.shape[:-1]
        h = self.fc(self.to_z(feat)).reshape(-1, 8 * self.depth, 1, 1)
        h = h.contiguous(memory_format=torch.channels_last)
        return self.deconvs(h).reshape(*lead, 3, 64, 64).movedim(-3, -1)


class RSSM(nn.Module):
    """Recurrent state-space model with a Gaussian stochastic state (DreamerV2, ``dyn_discrete: 0``).

    ``action_dim == 0`` gives the *action-free* RSSM of DisWM/APV pretraining: the prior only sees
    the previous stochastic state, so its outputs cannot depend on actions.
    """

    def __init__(
        self, embed: int, action_dim: int, deter: int, stoch: int, hidden: int, min_std: float
    ) -> None:
        super().__init__()
        self.deter, self.stoch, self.action_dim, self.min_std = deter, stoch, action_dim, min_std
        self.img_in = nn.Sequential(nn.Linear(stoch + action_dim, hidden), nn.ELU())
        self.cell = nn.GRUCell(hidden, deter)
        self.img_out = nn.Sequential(nn.Linear(deter, hidden), nn.ELU(), nn.Linear(hidden, 2 * stoch))
        self.obs_out = nn.Sequential(nn.Linear(deter + embed, hidden), nn.ELU(), nn.Linear(hidden, 2 * stoch))

    def initial(self, batch: int, device: torch.device | str) -> State:
        zeros = torch.zeros
        return {
            "mean": zeros(batch, self.stoch, device=device),
            "std": zeros(batch, self.stoch, device=device),
            "stoch": zeros(batch, self.stoch, device=device),
            "deter": zeros(batch, self.deter, device=device),
        }

    def _stats(self, x: Tensor, sample: bool) -> tuple[Tensor, Tensor, Tensor]:
        mean, std = x.chunk(2, -1)
        std = 2.0 * torch.sigmoid(std / 2.0) + self.min_std  # dreamer-torch "sigmoid2"
        stoch = mean + std * torch.randn_like(std) if sample else mean
        return mean, std, stoch

    def img_step(self, prev: State, action: Tensor | None, sample: bool = True) -> State:
        """Prior step: (prev state, action (B, A) or None) -> state, all (B, .)."""
        x = prev["stoch"] if self.action_dim == 0 else torch.cat([prev["stoch"], action], -1)
        deter = self.cell(self.img_in(x), prev["deter"])
        mean, std, stoch = self._stats(self.img_out(deter), sample)
        return {"mean": mean, "std": std, "stoch": stoch, "deter": deter}

    def obs_step(
        self, prev: State, action: Tensor | None, embed: Tensor, is_first: Tensor | None = None
    ) -> tuple[State, State]:
        """Posterior step; states are zeroed where ``is_first`` (B,) before the transition."""
        if is_first is not None:
            keep = (~is_first).to(embed.dtype).unsqueeze(-1)
            prev = {k: v * keep for k, v in prev.items()}
            if action is not None:
                action = action * keep
        prior = self.img_step(prev, action)
        mean, std, stoch = self._stats(self.obs_out(torch.cat([prior["deter"], embed], -1)), True)
        return {"mean": mean, "std": std, "stoch": stoch, "deter": prior["deter"]}, prior

    def observe(
        self, embed: Tensor, action: Tensor | None, is_first: Tensor, state: State | None = None
    ) -> tuple[State, State]:
        """Filter a sequence. embed (B, T, E), action (B, T, A) or None, is_first (B, T) -> (B, T, .)."""
        batch, steps = embed.shape[:2]
        state = self.initial(batch, embed.device) if state is None else state
        posts, priors = [], []
        for t in range(steps):
            act = None if action is None else action[:, t]
            state, prior = self.obs_step(state, act, embed[:, t], is_first[:, t])
            posts.append(state)
            priors.append(prior)
        stack = lambda seq: {k: torch.stack([s[k] for s in seq], 1) for k in seq[0]}  # noqa: E731
        return stack(posts), stack(priors)

    @staticmethod
    def feat(state: State) -> Tensor:
        """(..., S + D) feature of a state."""
        return torch.cat([state["stoch"], state["deter"]], -1)


class WorldModel(nn.Module):
    """Encoder + RSSM + decoder + reward (+ continue) heads.

    Args:
        cfg: Any :class:`WorldModelConfig` (sizes are read from it).
        action_dim: Action size; 0 builds the action-free model used for pretraining.
        pred_continue: Add a continue (discount) head (off for DMC, as ``pred_discount: False``).
    """

    def __init__(self, cfg: WorldModelConfig, action_dim: int, pred_continue: bool = False) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = BetaVAEEncoder(cfg.z_dim, cfg.cnn_depth)
        self.rssm = RSSM(cfg.z_dim, action_dim, cfg.deter, cfg.stoch, cfg.hidden, cfg.min_std)
        feat = cfg.deter + cfg.stoch
        self.decoder = BetaVAEDecoder(feat, cfg.z_dim, cfg.cnn_depth)
        self.reward = mlp(feat, cfg.units, 2, 1) if action_dim > 0 else None
        self.cont = mlp(feat, cfg.units, 3, 1) if pred_continue else None

    def loss(
        self, batch: dict[str, Tensor], teacher: nn.Module | None = None, eta: float = 0.0
    ) -> tuple[dict[str, Tensor], State, dict[str, Tensor]]:
        """World-model losses on a batch of sequences.

        Args:
            batch: ``image`` uint8 (B, T, 64, 64, 3), ``action`` (B, T, A) (ignored when
                action-free), ``reward`` (B, T), ``is_first`` bool (B, T), ``is_terminal`` bool (B, T).
            teacher: Frozen pretrained encoder for DisWM distillation, or None.
            eta: Weight of the distillation loss (0 skips computing the teacher).

        Returns:
            Unscaled losses (``image`` includes ``beta * vae_kl`` as in the official code,
            ``reward``, ``kl``, ``distill``, optionally ``continue``), posterior states (B, T, .)
            and detached metrics (``vae_kl``, ``kl_value``, ``recon``).
        """
        image = batch["image"]
        mu, logvar, z = self.encoder(image)  # (B, T, Z)
        action = batch["action"] if self.rssm.action_dim > 0 else None
        post, prior = self.rssm.observe(z, action, batch["is_first"])
        feat = self.rssm.feat(post)  # (B, T, F)
        recon = self.decoder(feat)  # (B, T, 64, 64, 3)
        target = image.to(torch.float32) / 255.0 - 0.5
        # Unit-variance Gaussian NLL summed over pixels (constant dropped), mean over (B, T).
        image_nll = 0.5 * (recon - target).square().sum((-3, -2, -1)).mean()
        kl_vae = vae_kl(mu, logvar).mean()
        losses: dict[str, Tensor] = {"image": image_nll + self.cfg.beta * kl_vae}
        kl_loss, kl_value = rssm_kl_loss(post, prior, self.cfg.kl_balance, self.cfg.kl_free)
        losses["kl"] = kl_loss
        if self.reward is not None:
            losses["reward"] = 0.5 * (self.reward(feat).squeeze(-1) - batch["reward"]).square().mean()
        if self.cont is not None:
            cont_target = (~batch["is_terminal"]).to(torch.float32)
            losses["continue"] = F.binary_cross_entropy_with_logits(self.cont(feat).squeeze(-1), cont_target)
        if teacher is not None and eta > 0.0:
            with torch.no_grad():
                t_mu, _, _ = teacher(image, sample=False)
            # Distil on the posterior means: deterministic, so identical weights give exactly 0.
            losses["distill"] = distill_loss(mu, t_mu)
        metrics = {"vae_kl": kl_vae.detach(), "kl_value": kl_value.mean(), "image_nll": image_nll.detach()}
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
