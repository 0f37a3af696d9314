"""Recurrent state-space model of DreamerV2 with a Gaussian stochastic state (``dyn_discrete: 0``).

Follows dreamer-torch's ``networks.RSSM`` and ``networks.GRUCell`` as the official DisWM code uses
them (``qiwang067/DisWM``: ``networks.py``; ``configs.yaml`` ``dmc``: ``dyn_cell: gru_layer_norm``,
``dyn_std_act: sigmoid2``, ``dyn_min_std: 0.1``, one input and one output layer). Shapes: ``B``
batch, ``T`` time, ``S`` stoch, ``D`` deter, ``E`` embedding, ``A`` actions, ``H`` hidden.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.distributions import Normal, kl_divergence

State = dict[str, Tensor]
"""RSSM state: ``mean``, ``std``, ``stoch`` (..., S) and ``deter`` (..., D)."""


class GRUCell(nn.Module):
    """dreamer-torch's GRU cell (``networks.GRUCell``), optionally layer-normed.

    One linear map of ``[input, state]`` to reset, candidate and update parts, each ``(B, D)``;
    with ``norm`` the ``(B, 3D)`` parts are layer-normed first. Unlike ``torch.nn.GRUCell`` the reset
    gate scales the candidate *after* the linear map and the update gate has a bias of -1, so a
    fresh cell keeps ~73% of its state each step:

        reset, cand, update = split(LN(W [x, h] + b))
        h' = sigmoid(update - 1) * tanh(sigmoid(reset) * cand) + (1 - sigmoid(update - 1)) * h
    """

    def __init__(self, inp: int, size: int, norm: bool = True, update_bias: float = -1.0) -> None:
        super().__init__()
        self.size, self.update_bias = size, update_bias
        self.layer = nn.Linear(inp + size, 3 * size)
        self.norm = nn.LayerNorm(3 * size) if norm else None

    def forward(self, x: Tensor, state: Tensor) -> Tensor:
        """x (B, I), state (B, D) -> new state (B, D)."""
        parts = self.layer(torch.cat([x, state], -1))
        if self.norm is not None:
            parts = self.norm(parts)
        reset, cand, update = parts.split(self.size, -1)
        cand = torch.tanh(torch.sigmoid(reset) * cand)
        update = torch.sigmoid(update + self.update_bias)
        return state + update * (cand - state)


def gauss_kl(mean_a: Tensor, std_a: Tensor, mean_b: Tensor, std_b: Tensor) -> Tensor:
    """KL(N(a) || N(b)) of diagonal Gaussians, summed over the last axis (dreamer-torch's
    ``Independent(Normal, 1)`` KL)."""
    return kl_divergence(normal(mean_a, std_a), normal(mean_b, std_b)).sum(-1)


def normal(mean: Tensor, std: Tensor) -> Normal:
    """A diagonal Gaussian without argument validation: every std here is a sigmoid plus a positive
    minimum, and validation's checks run on every call of the update."""
    return Normal(mean, std, validate_args=False)


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


class RSSM(nn.Module):
    """Recurrent state-space model: GRU deterministic path, Gaussian stochastic state.

    ``action_dim == 0`` gives the *action-free* RSSM of DisWM/APV pretraining: the prior only sees
    the previous stochastic state, so its outputs cannot depend on actions.

    The posterior's first layer on ``[deter, embed]`` is stored as two linear maps (``obs_deter``
    and ``obs_embed``, the same function as one map on the concatenation) so :meth:`observe` can
    project the whole ``(B, T, E)`` embedding sequence in one matrix product before its loop. Both
    are initialised as that one map (PyTorch's default, bound ``1 / sqrt(D + E)``), as the official
    ``_obs_out_layers``.
    """

    def __init__(
        self,
        embed: int,
        action_dim: int,
        deter: int,
        stoch: int,
        hidden: int,
        min_std: float,
        cell: str = "gru_layer_norm",
    ) -> None:
        super().__init__()
        self.deter, self.stoch, self.action_dim, self.min_std = deter, stoch, action_dim, min_std
        self.img_in = nn.Sequential(nn.Linear(stoch + action_dim, hidden), nn.ELU())
        self.cell = GRUCell(hidden, deter, norm=cell == "gru_layer_norm")
        self.img_out = nn.Sequential(nn.Linear(deter, hidden), nn.ELU(), nn.Linear(hidden, 2 * stoch))
        self.obs_deter = nn.Linear(deter, hidden)
        self.obs_embed = nn.Linear(embed, hidden, bias=False)
        self.obs_stats = nn.Linear(hidden, 2 * stoch)
        # PyTorch's default Linear init draws weights and bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in));
        # the official single layer has fan_in D + E, each half here alone would have D or E.
        bound = 1.0 / math.sqrt(deter + embed)
        with torch.no_grad():
            for p in (self.obs_deter.weight, self.obs_deter.bias, self.obs_embed.weight):
                p.uniform_(-bound, bound)

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
        # Normal.rsample's loc + eps * scale, fused (addcmul) as before the switch to torch.distributions,
        # which keeps every logged number bit-identical to earlier runs (rsample rounds differently).
        stoch = torch.addcmul(mean, std, torch.randn_like(std)) if sample else mean
        return mean, std, stoch

    def _deter_step(self, prev: State, action: Tensor | None) -> Tensor:
        x = prev["stoch"] if self.action_dim == 0 else torch.cat([prev["stoch"], action], -1)
        return self.cell(self.img_in(x), prev["deter"])

    def prior_stats(self, deter: Tensor, sample: bool = True) -> State:
        """Prior of a deterministic state (..., D): any leading shape, so a whole sequence at once."""
        mean, std, stoch = self._stats(self.img_out(deter), sample)
        return {"mean": mean, "std": std, "stoch": stoch, "deter": deter}

    def img_step(self, prev: State, action: Tensor | None, sample: bool = True) -> State:
        """Prior step: (prev state, action (B, A) or None) -> state, all (B, .)."""
        return self.prior_stats(self._deter_step(prev, action), sample)

    def _post_step(
        self, prev: State, action: Tensor | None, embed_proj: Tensor, is_first: Tensor | None, sample: bool
    ) -> State:
        """Posterior from the projected embedding (B, H); zeroes state and action where ``is_first``."""
        if is_first is not None:
            keep = (~is_first).to(embed_proj.dtype).unsqueeze(-1)
            prev = {"stoch": prev["stoch"] * keep, "deter": prev["deter"] * keep}
            if action is not None:
                action = action * keep
        deter = self._deter_step(prev, action)
        x = F.elu(self.obs_deter(deter) + embed_proj)
        mean, std, stoch = self._stats(self.obs_stats(x), sample)
        return {"mean": mean, "std": std, "stoch": stoch, "deter": deter}

    def obs_step(
        self, prev: State, action: Tensor | None, embed: Tensor, is_first: Tensor | None = None,
        sample: bool = True,
    ) -> State:
        """Posterior step for acting: embed (B, E), is_first (B,) -> state (B, .)."""
        return self._post_step(prev, action, self.obs_embed(embed), is_first, sample)

    def observe(
        self, embed: Tensor, action: Tensor | None, is_first: Tensor, state: State | None = None,
        sample: bool = True,
    ) -> tuple[State, State]:  # fmt: skip
        """Filter a sequence. embed (B, T, E), action (B, T, A) or None, is_first (B, T) -> (B, T, .).

        The loop computes only what the next step needs (the posterior); the priors' statistics
        depend on the deterministic states alone, so they are computed for all T steps at once.
        ``sample`` False uses the posterior's mean as the next state's input (the official
        action-free pretraining, ``obs_step_af``).
        """
        batch, steps = embed.shape[:2]
        state = self.initial(batch, embed.device) if state is None else state
        proj = self.obs_embed(embed)  # (B, T, H)
        posts = []
        for t in range(steps):
            act = None if action is None else action[:, t]
            state = self._post_step(state, act, proj[:, t], is_first[:, t], sample)
            posts.append(state)
        post = {k: torch.stack([s[k] for s in posts], 1) for k in posts[0]}
        prior = self.prior_stats(post["deter"], sample=False)
        return post, prior

    @staticmethod
    def feat(state: State) -> Tensor:
        """(..., S + D) feature of a state."""
        return torch.cat([state["stoch"], state["deter"]], -1)
