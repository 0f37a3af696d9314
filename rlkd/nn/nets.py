"""Network building blocks shared by agents and intrinsic-reward modules."""

from __future__ import annotations

import itertools
import math

import numpy as np
import torch
from torch import nn


def layer_init(layer: nn.Module, std: float = math.sqrt(2), bias: float = 0.0) -> nn.Module:
    """Orthogonal weights with gain ``std`` and constant bias, as in the PPO and RND references."""
    nn.init.orthogonal_(layer.weight, std)
    nn.init.constant_(layer.bias, bias)
    return layer


def mlp(
    sizes: list[int],
    activation: type[nn.Module] = nn.Tanh,
    out_std: float = math.sqrt(2),
    orthogonal: bool = True,
) -> nn.Sequential:
    """``Linear -> act -> ... -> Linear``; no activation after the last layer.

    Args:
        sizes: Input, hidden and output sizes.
        activation: Hidden activation.
        out_std: Gain of the last layer's orthogonal init.
        orthogonal: Orthogonal weights and zero biases (the PPO and RND references); False keeps
            PyTorch's default init (dreamer-torch's ``DenseHead``, which the Dreamer parts follow).
    """
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(itertools.pairwise(sizes)):
        last = i == len(sizes) - 2
        linear = nn.Linear(a, b)
        layers.append(layer_init(linear, std=out_std if last else math.sqrt(2)) if orthogonal else linear)
        if not last:
            layers.append(activation())
    return nn.Sequential(*layers)


def layer_chain(*modules: nn.Module) -> list[nn.Module]:
    """The layers of ``modules`` in call order, nested ``nn.Sequential`` containers opened."""
    out: list[nn.Module] = []
    for m in modules:
        out += layer_chain(*m) if isinstance(m, nn.Sequential) else [m]
    return out


def numpy32(x: torch.Tensor) -> np.ndarray:
    """A tensor as a float32 numpy array on the CPU (what monitoring stores per step)."""
    return x.detach().cpu().numpy().astype(np.float32)


def run_chain(layers: list[nn.Module], x: torch.Tensor) -> torch.Tensor:
    """``x`` through ``layers`` by their ``forward`` methods: what ``nn.Sequential`` computes, without
    ``Module.__call__``'s hook dispatch (~4 us a layer on this CPU, a third of a small MLP's forward
    on a few rows). For modules that carry no hooks, as rlkd's policies."""
    for layer in layers:
        x = layer.forward(x)
    return x


class Residual(nn.Module):
    """``x + body(x)``: the RND paper policy's value "extra layer" (CleanRL ``ppo_rnd_envpool.py``)."""

    def __init__(self, body: nn.Module) -> None:
        super().__init__()
        self.body = body

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def is_image(shape: tuple[int, ...]) -> bool:
    """Whether an observation shape is an image (rank 3: ``(C, H, W)`` or ``(H, W, C)``)."""
    return len(shape) == 3


def channels_last(shape: tuple[int, ...]) -> bool:
    """Whether a rank-3 image shape is ``(H, W, C)``: the channel axis is the smallest one.

    envpool's Atari stacks are ``(4, 84, 84)``, RGB renders ``(64, 64, 3)``, stacked RGB ``(64, 64, 9)``.

    Raises:
        ValueError: the shape has no unique smallest axis at either end.
    """
    if shape[2] < shape[0] and shape[2] < shape[1]:
        return True
    if shape[0] < shape[1] and shape[0] < shape[2]:
        return False
    raise ValueError(
        f"cannot tell the channel axis of image observations of shape {shape}: expected (C, H, W) or "
        "(H, W, C) with C smaller than H and W"
    )


def image_chw(shape: tuple[int, ...]) -> tuple[int, int, int]:
    """``(C, H, W)`` of an image observation shape, channel-first or channel-last."""
    if channels_last(shape):
        return shape[2], shape[0], shape[1]
    return shape[0], shape[1], shape[2]


def nature_cnn(
    in_channels: int, hw: tuple[int, int], activation: type[nn.Module] = nn.ReLU
) -> tuple[nn.Sequential, int]:
    """The DQN/PPO/RND conv stack (32x8/4, 64x4/2, 64x3/1) and its flattened output size.

    Args:
        in_channels: Input channels.
        hw: Input height and width (84x84 for Atari, 64x64 for our pixel envs).
        activation: ReLU for the policy (Mnih et al. 2015), LeakyReLU for RND's networks.
    """
    net = nn.Sequential(
        layer_init(nn.Conv2d(in_channels, 32, 8, stride=4)),
        activation(),
        layer_init(nn.Conv2d(32, 64, 4, stride=2)),
        activation(),
        layer_init(nn.Conv2d(64, 64, 3, stride=1)),
        activation(),
        nn.Flatten(),
    )
    with torch.no_grad():
        size = int(np.prod(net(torch.zeros(1, in_channels, *hw)).shape[1:]))
    return net, size
