"""Observation encoders and decoders of the world model: DreamerV2 conv, DisWM beta-VAE, vector MLP.

Observations first go through :func:`preprocess`: uint8 images (..., S, S, 3) become floats in
[-0.5, 0.5] (dreamer-torch's ``obs / 255 - 0.5``), vectors stay as they are. Every encoder maps
preprocessed observations (..., *obs_shape) to an embedding (..., E); every decoder maps an RSSM
feature (..., F) to the mean of a unit-variance Gaussian over the preprocessed observation, so the
image is converted once per batch and serves as both the encoder input and the decoder target.

Images are 64x64 (the paper's size) or 32x32 (the CPU pixel preset): the 32x32 stacks are the
64x64 ones without their highest-resolution layer, so a 32x32 frame costs ~4x less to encode and
decode (docs/diswm.md, "A pixel preset that learns on one core").
"""

from __future__ import annotations

import itertools

import torch
from torch import Tensor, nn

from rlkd.nn.nets import mlp


def dense(inp: int, units: int, layers: int, out: int) -> nn.Sequential:
    """dreamer-torch's ``DenseHead``: ``layers`` ELU hidden layers of ``units``, a linear output,
    PyTorch's default init."""
    return mlp([inp, *[units] * layers, out], nn.ELU, orthogonal=False)


def preprocess(obs: Tensor) -> Tensor:
    """uint8 images (..., H, W, 3) -> float32 in [-0.5, 0.5]; float vectors unchanged."""
    if obs.dtype == torch.uint8:
        return obs.to(torch.float32).mul_(1.0 / 255.0).sub_(0.5)
    return obs


def kaiming_init(module: nn.Module) -> None:
    """The official beta-VAE's ``weight_init`` (``beta_vae.py``, ``kaiming_init``): Kaiming-normal
    weights (fan-in, gain sqrt 2) and zero biases for every ``Linear`` and ``Conv2d`` (transposed
    convolutions keep PyTorch's default, as there)."""
    for m in module.modules():
        if type(m) in (nn.Linear, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight)
            nn.init.zeros_(m.bias)


IMAGE_SIZES = (32, 64)
"""Square image sides the conv encoders and decoders are built for."""


def _frames(image: Tensor) -> Tensor:
    """Preprocessed (..., S, S, 3) -> (N, 3, S, S), channels-last in memory (no copy)."""
    return image.reshape(-1, *image.shape[-3:]).movedim(-1, -3)


class ConvEncoder(nn.Module):
    """DreamerV2's conv encoder (dreamer-torch ``ConvEncoder``, ``encoder_kernels: [4, 4, 4, 4]``).

    Four stride-2 unpadded convolutions of depth d, 2d, 4d, 8d with ELU (``act: ELU``):
    64 -> 31 -> 14 -> 6 -> 2, so the embedding is the flattened (8d, 2, 2) map, E = 32 d.
    Input preprocessed (..., 64, 64, 3), output (..., 32 d). For 32x32 images (not in the
    official code) the first layer is left out: depth d, 2d, 4d, 32 -> 15 -> 6 -> 2, E = 16 d.
    """

    def __init__(self, depth: int = 32, size: int = 64) -> None:
        super().__init__()
        d = depth
        depths = [3, d, 2 * d, 4 * d, 8 * d] if size == 64 else [3, d, 2 * d, 4 * d]
        layers: list[nn.Module] = []
        for inp, out in itertools.pairwise(depths):
            layers += [nn.Conv2d(inp, out, 4, 2), nn.ELU()]
        self.convs = nn.Sequential(*layers)
        # oneDNN runs these convolutions faster channels-last on CPU; preprocess() yields NHWC memory.
        self.convs.to(memory_format=torch.channels_last)
        self.embed_size = 4 * depths[-1]

    def forward(self, image: Tensor) -> Tensor:
        # Flatten in (C, H, W) order, as dreamer-torch's NCHW reshape does.
        x = self.convs(_frames(image)).contiguous().flatten(1)
        return x.reshape(*image.shape[:-3], self.embed_size)


class ConvDecoder(nn.Module):
    """DreamerV2's conv decoder (dreamer-torch ``ConvDecoder``, ``decoder_kernels: [5, 5, 6, 6]``, thin).

    Linear to a (32 d, 1, 1) map, then stride-2 transposed convolutions of depth 4d, 2d, d, 3:
    1 -> 5 -> 13 -> 30 -> 64. Feature (..., F) -> image mean (..., 64, 64, 3). For 32x32 images
    (not in the official code) the 4d layer is left out: 2d, d, 3 with kernels 5, 6, 6,
    1 -> 5 -> 14 -> 32.
    """

    def __init__(self, feat_size: int, depth: int = 32, size: int = 64) -> None:
        super().__init__()
        d = depth
        self.fc = nn.Linear(feat_size, 32 * d)
        if size == 64:
            shapes = [(32 * d, 4 * d, 5), (4 * d, 2 * d, 5), (2 * d, d, 6), (d, 3, 6)]
        else:
            shapes = [(32 * d, 2 * d, 5), (2 * d, d, 6), (d, 3, 6)]
        layers: list[nn.Module] = []
        for inp, out, kernel in shapes:
            layers += [nn.ConvTranspose2d(inp, out, kernel, 2), nn.ELU()]
        self.deconvs = nn.Sequential(*layers[:-1])  # no activation on the image mean
        self.size = size
        # Channels-last transposed convolutions are faster on CPU, and their NHWC output already is
        # the (..., 64, 64, 3) frame layout.
        self.deconvs.to(memory_format=torch.channels_last)

    def forward(self, feat: Tensor) -> Tensor:
        h = self.fc(feat).reshape(-1, self.fc.out_features, 1, 1)
        h = h.contiguous(memory_format=torch.channels_last)
        return self.deconvs(h).movedim(-3, -1).reshape(*feat.shape[:-1], self.size, self.size, 3)


class BetaVAEEncoder(nn.Module):
    """Convolutional beta-VAE encoder (the official ``BetaVAE_H_Encoder`` layout for 64x64).

    Input preprocessed (..., S, S, 3); output ``mu``, ``logvar`` and reparameterised ``z``, each (..., Z).
    For S = 32 (not in the official code) the first stride-2 layer is left out.
    """

    def __init__(self, z_dim: int, depth: int = 32, size: int = 64) -> None:
        super().__init__()
        self.z_dim = z_dim
        d = depth
        first = [nn.Conv2d(3, d, 4, 2, 1), nn.ELU()] if size == 64 else []  # 64 -> 32
        self.convs = nn.Sequential(
            *first,
            nn.Conv2d(d if size == 64 else 3, d, 4, 2, 1), nn.ELU(),  # 16x16
            nn.Conv2d(d, 2 * d, 4, 2, 1), nn.ELU(),  # 8x8
            nn.Conv2d(2 * d, 2 * d, 4, 2, 1), nn.ELU(),  # 4x4
            nn.Conv2d(2 * d, 8 * d, 4, 1), nn.ELU(),  # 1x1
            nn.Flatten(),
        )  # fmt: skip
        # oneDNN's convolutions run ~1.7x faster channels-last at depth 8 on CPU and break even
        # at the paper's depth 32 (bench/bench_diswm.py); preprocess() already yields NHWC memory.
        self.convs.to(memory_format=torch.channels_last)
        self.head = nn.Linear(8 * d, 2 * z_dim)
        kaiming_init(self)

    def forward(self, image: Tensor, sample: bool = True) -> tuple[Tensor, Tensor, Tensor]:
        lead = image.shape[:-3]
        mu, logvar = self.head(self.convs(_frames(image))).reshape(*lead, 2 * self.z_dim).chunk(2, -1)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if sample else mu
        return mu, logvar, z


class BetaVAEDecoder(nn.Module):
    """Feature (..., F) -> z bottleneck (..., Z) -> image mean (..., S, S, 3) in [-0.5, 0.5] units.

    For S = 32 (not in the official code) the last stride-2 layer is left out.
    """

    def __init__(self, feat_size: int, z_dim: int, depth: int = 32, size: int = 64) -> None:
        super().__init__()
        d = depth
        self.to_z = nn.Sequential(nn.Linear(feat_size, z_dim), nn.ELU())
        self.fc = nn.Sequential(nn.Linear(z_dim, 8 * d), nn.ELU())
        last = [nn.ELU(), nn.ConvTranspose2d(d, 3, 4, 2, 1)] if size == 64 else []  # 32 -> 64
        self.deconvs = nn.Sequential(
            nn.ConvTranspose2d(8 * d, 2 * d, 4), nn.ELU(),  # 4x4
            nn.ConvTranspose2d(2 * d, 2 * d, 4, 2, 1), nn.ELU(),  # 8x8
            nn.ConvTranspose2d(2 * d, d, 4, 2, 1), nn.ELU(),  # 16x16
            nn.ConvTranspose2d(d, d if size == 64 else 3, 4, 2, 1),  # 32x32
            *last,
        )  # fmt: skip
        self.deconvs.to(memory_format=torch.channels_last)
        self.depth, self.size = d, size
        kaiming_init(self)

    def forward(self, feat: Tensor) -> Tensor:
        lead = feat.shape[:-1]
        h = self.fc(self.to_z(feat)).reshape(-1, 8 * self.depth, 1, 1)
        h = h.contiguous(memory_format=torch.channels_last)
        return self.deconvs(h).movedim(-3, -1).reshape(*lead, self.size, self.size, 3)


class MLPEncoder(nn.Module):
    """Vector observations (..., D) -> embedding (..., units): DreamerV2's ``mlp_keys`` encoder."""

    def __init__(self, obs_dim: int, units: int, layers: int) -> None:
        super().__init__()
        self.net = dense(obs_dim, units, layers - 1, units)
        self.embed_size = units

    def forward(self, obs: Tensor) -> Tensor:
        return nn.functional.elu(self.net(obs))


class MLPDecoder(nn.Module):
    """Feature (..., F) -> mean of the vector observation (..., D)."""

    def __init__(self, feat_size: int, obs_dim: int, units: int, layers: int) -> None:
        super().__init__()
        self.net = dense(feat_size, units, layers, obs_dim)

    def forward(self, feat: Tensor) -> Tensor:
        return self.net(feat)
