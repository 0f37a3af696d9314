"""What the novelty score can read: views of one acting step of a policy (issue 36's candidates).

FIPER scores the policy's embedding; which embedding carries a shift is an empirical question (the
actor's last hidden layer did not carry a 3 m lidar on the AGV). :func:`step_views` gives, beside
the step's :class:`~rlkd.agents.Inspection`, every vector a candidate can read:

=============  ==============================================================================
``policy``     what :meth:`Policy.inspect` calls the features (PPO: the actor's last hidden
               layer; Dreamer: the RSSM state the actor reads, stochastic and deterministic)
``obs``        the observation as the policy's network receives it (PPO: after its running
               normalisation; images: area-pooled to 16 x 16 and scaled to [0, 1])
``layer1``...  PPO: the output of each of the actor's hidden activations, first to last
               (images: ``layer1`` is the CNN trunk's output)
``all``        PPO: ``obs`` and every hidden layer concatenated
``deter``      Dreamer: the RSSM's deterministic (GRU) state
``stoch``      Dreamer: its stochastic state
=============  ==============================================================================

The policy classes are read by duck typing (a PPO policy has ``prep`` and an actor-critic
``agent``; a Dreamer policy keeps its RSSM ``latent``), so this module adds no code to the agents.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from rlkd.agents import Inspection, Policy
from rlkd.errors import UserError
from rlkd.nn.nets import layer_chain, numpy32

DEFAULT_VIEW = "policy"
POOLED_SIDE = 16
"""Images are average-pooled to at most this side per channel for the raw-observation baseline."""


def raw_input(obs: np.ndarray) -> np.ndarray:
    """Observations ``(N, *obs_shape)`` as float32 vectors ``(N, D)``: images (rank 3) area-pooled to
    at most ``POOLED_SIDE`` per side and scaled to [0, 1], anything else flattened."""
    obs = np.asarray(obs)
    if obs.ndim == 4:
        channels_last = obs.shape[-1] <= 4
        x = obs if channels_last else obs.transpose(0, 2, 3, 1)
        n, h, w, c = x.shape
        f = max(1, h // POOLED_SIDE)
        x = x[:, : h // f * f, : w // f * f].astype(np.float32)
        x = x.reshape(n, h // f, f, w // f, f, c).mean((2, 4))
        return (x / 255.0).reshape(n, -1).astype(np.float32)
    return obs.reshape(len(obs), -1).astype(np.float32)


_ACTIVATIONS = (nn.Tanh, nn.ReLU, nn.ELU, nn.SiLU, nn.LeakyReLU, nn.GELU, nn.Sigmoid)


def _kind(policy: Policy) -> str:
    agent = getattr(policy, "agent", None)
    if hasattr(policy, "prep") and hasattr(agent, "actor_body"):
        return "ppo"
    if hasattr(policy, "latent") and hasattr(getattr(agent, "wm", None), "rssm"):
        return "dreamer"
    return "other"


@torch.no_grad()
def _ppo_views(policy: Policy, obs: np.ndarray) -> dict[str, np.ndarray]:
    """The normalised observation and each hidden activation of a PPO policy's actor ``(N, D)``."""
    agent, prep = policy.agent, policy.prep  # type: ignore[attr-defined]
    x = prep(obs, policy.device, update=False)  # type: ignore[attr-defined]
    views = {"obs": raw_input(obs) if agent.image else numpy32(x.reshape(len(x), -1))}
    layers = []
    # The trunk's output is the CNN's embedding for images and the flattened input for vectors
    # (already the ``obs`` view); ``_features`` applies the image scaling the trunk expects.
    h = agent._features(x)
    if agent.image:
        layers.append(h)
    for layer in layer_chain(agent.actor_body):
        h = layer.forward(h)
        if isinstance(layer, _ACTIVATIONS):
            layers.append(h)
    for i, h in enumerate(layers, 1):
        views[f"layer{i}"] = numpy32(h)
    views["all"] = np.concatenate([views["obs"], *(numpy32(h) for h in layers)], 1)
    return views


def step_views(policy: Policy, obs: np.ndarray, first: np.ndarray, deterministic: bool) -> tuple[
    Inspection, dict[str, np.ndarray]
]:  # fmt: skip
    """One acting step (``policy.inspect``) and every view of it, each ``(N, D)`` float32."""
    step = policy.inspect(obs, first, deterministic)
    views = {DEFAULT_VIEW: step.features}
    kind = _kind(policy)
    if kind == "ppo":
        views.update(_ppo_views(policy, obs))
    elif kind == "dreamer":
        latent = policy.latent  # type: ignore[attr-defined]  # the state inspect just advanced
        views["obs"] = raw_input(obs)
        views["deter"] = numpy32(latent["deter"])
        views["stoch"] = numpy32(latent["stoch"].reshape(len(obs), -1))
    else:
        views["obs"] = raw_input(obs)
    return step, views


def check_view(name: str, available: list[str]) -> None:
    """Refuse a view the policy does not have, naming those it has.

    Raises:
        UserError: ``name`` is not in ``available``.
    """
    if name not in available:
        raise UserError(f"--features {name} is not a view of this policy; it has {', '.join(available)}")
