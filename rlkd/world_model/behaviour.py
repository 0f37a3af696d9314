"""DreamerV2's behaviour learning: actor and critic trained on trajectories imagined by the world model.

Follows the official DisWM code's ``models.ImagBehavior`` (dreamer-torch) with the DMC settings
(``imag_gradient: dynamics``, ``actor_dist: trunc_normal``, ``slow_value_target: True``,
``imag_horizon: 15``, ``discount_lambda: 0.95``). Shapes: ``H`` imagination horizon (states,
start included), ``N`` starts (B * T posterior states), ``F`` feature size, ``A`` actions.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from rlkd.world_model.codecs import dense
from rlkd.world_model.rssm import RSSM, State, normal


class Actor(nn.Module):
    """Truncated-normal policy on [-1, 1] (dreamer-torch ``ActionHead``, ``trunc_normal``).

    Feature (..., F) -> action distribution over (..., A).
    """

    def __init__(self, feat: int, action_dim: int, units: int, min_std: float, clip: bool = True) -> None:
        super().__init__()
        self.net = dense(feat, units, 4, 2 * action_dim)
        self.min_std, self.clip = min_std, clip

    def forward(self, feat: Tensor) -> tuple[Tensor, Tensor]:
        """Mean tanh(m) and std 2 sigmoid(s / 2) + min_std, each (..., A)."""
        mean, std = self.net(feat).chunk(2, -1)
        return torch.tanh(mean), 2.0 * torch.sigmoid(std / 2.0) + self.min_std

    def sample(self, feat: Tensor, deterministic: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """Returns (action (..., A), entropy (...), std (..., A)).

        Samples are clipped to the open interval with a straight-through gradient, as dreamer-torch's
        ``SafeTruncatedNormal.sample`` (``tools.py``, a ``torch.distributions.Normal`` subclass that
        only overrides ``sample``) would; the entropy is the untruncated Normal's. With ``clip``
        off the samples stay unclipped, as the official code really acts: its ``ContDist.sample``
        calls ``rsample``, which never reaches ``SafeTruncatedNormal.sample`` (docs/diswm.md).
        """
        mean, std = self(feat)
        if deterministic:
            return mean, torch.zeros(mean.shape[:-1], device=mean.device), std
        action = torch.addcmul(mean, std, torch.randn_like(std))  # rsample, as in RSSM._stats
        if self.clip:
            action = action + (action.clamp(-1.0 + 1e-6, 1.0 - 1e-6) - action).detach()
        return action, normal(mean, std).entropy().sum(-1), std


def lambda_return(
    reward: Tensor, value: Tensor, discount: Tensor, bootstrap: Tensor, lam: float,
    official_order: bool = False,
) -> Tensor:  # fmt: skip
    """TD(lambda) returns, computed backwards in time (dreamer-torch ``tools.lambda_return``).

    Args:
        reward, value, discount: (H, N) for imagined steps 0..H-1.
        bootstrap: (N,) value after the last step.
        official_order: Return them in the order the official code does, last step first
            (``tools.static_scan_for_lambda_return`` builds them backwards and never flips them
            back), so step t is paired with R_{H-1-t}: a bug, kept to reproduce the paper's numbers.

    Returns:
        (H, N) returns R_t = r_t + d_t ((1 - lam) v_{t+1} + lam R_{t+1}), R_H = bootstrap.
    """
    next_values = torch.cat([value[1:], bootstrap[None]], 0)
    inputs = reward + discount * next_values * (1.0 - lam)
    out = []
    last = bootstrap
    for t in reversed(range(reward.shape[0])):
        last = inputs[t] + discount[t] * lam * last
        out.append(last)
    return torch.stack(out if official_order else out[::-1], 0)


def imagine(rssm: RSSM, actor: Actor, start: State, horizon: int) -> tuple[Tensor, Tensor, Tensor]:
    """Roll the prior forward under the actor from ``start`` (N, .) states.

    As ``ImagBehavior._imagine``: ``horizon`` states including the start, the actor sees detached
    features (``behavior_stop_grad``), and the sampled actions carry gradients into the dynamics.

    Returns:
        feat (H, N, F), actor entropy (H-1, N) and std (H-1, N, A) of the actions taken in states 0..H-2.
    """
    state = start
    feats, ents, stds = [RSSM.feat(start)], [], []
    for _ in range(horizon - 1):
        action, ent, std = actor.sample(feats[-1].detach())
        state = rssm.img_step(state, action)
        feats.append(RSSM.feat(state))
        ents.append(ent)
        stds.append(std)
    return torch.stack(feats, 0), torch.stack(ents, 0), torch.stack(stds, 0)


def imagined_discount(cont: nn.Module | None, feat: Tensor, is_terminal: Tensor, gamma: float) -> Tensor:
    """Discount of each imagined state (H, N): gamma, or gamma times the continue head's probability.

    With a continue head, the first entry is the replayed truth ``gamma * (1 - is_terminal)``
    instead of the prediction, as DreamerV2 does (danijar/dreamerv2 ``agent.py``,
    ``WorldModel.imagine``: "Override discount prediction for the first step with the true discount
    factor from the replay buffer"); dreamer-torch, which DisWM builds on, has no continue head
    in its DMC setting.
    """
    if cont is None:
        return torch.full(feat.shape[:-1], gamma, device=feat.device)
    disc = gamma * torch.sigmoid(cont(feat).squeeze(-1))
    true_first = gamma * (1.0 - is_terminal.to(disc.dtype))
    return torch.cat([true_first[None], disc[1:]], 0)


class Behaviour(nn.Module):
    """Actor, critic and slow target critic, trained on imagined trajectories (``ImagBehavior``).

    Args:
        feat: World-model feature size F.
        action_dim: Continuous action size A.
        units: Hidden units of the actor (4 layers) and critic (3 layers) MLPs.
        min_std: Minimum std of the actor.
        horizon: Imagined states per start, the start included (``imag_horizon``).
        discount, lam, entropy: gamma, lambda of the lambda-returns, actor entropy bonus.
        slow_every: Copy the critic into the slow critic every this many updates (``slow_target_update``).
        official_order: The official code's time-reversed lambda-returns (:func:`lambda_return`).
        clip_actions: Clip the actor's samples to [-1, 1] (False: unclipped, as the official code).
    """

    def __init__(
        self, feat: int, action_dim: int, units: int, min_std: float, horizon: int, discount: float,
        lam: float, entropy: float, slow_every: int, official_order: bool = False, clip_actions: bool = True,
    ) -> None:  # fmt: skip
        super().__init__()
        self.actor = Actor(feat, action_dim, units, min_std, clip_actions)
        self.official_order = official_order
        self.critic = dense(feat, units, 3, 1)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.horizon, self.discount, self.lam, self.entropy = horizon, discount, lam, entropy
        self.slow_every = slow_every
        # Updates so far; a buffer, so checkpoints keep the slow-target schedule.
        self.register_buffer("updates", torch.zeros((), dtype=torch.int64))

    def _update_slow_critic(self) -> None:
        """As ``ImagBehavior._update_slow_target``: copy (fraction 1) on updates 0, k, 2k, ..."""
        if int(self.updates) % self.slow_every == 0:
            self.slow_critic.load_state_dict(self.critic.state_dict())
        self.updates += 1

    def losses(
        self, wm: nn.Module, start: State, is_terminal: Tensor
    ) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Actor and critic losses from trajectories imagined by ``wm`` (``ImagBehavior._train``).

        Args:
            wm: The world model (``rssm``, ``reward`` and ``cont`` heads are used).
            start: (N, .) detached posterior states, one per replayed step.
            is_terminal: (N,) whether each start state ended its episode.

        Returns:
            Unscaled ``actor`` and ``critic`` losses and detached diagnostics.
        """
        self._update_slow_critic()
        # feat (H, N, F), ent (H-1, N), std (H-1, N, A)
        feat, ent, std = imagine(wm.rssm, self.actor, start, self.horizon)
        reward = wm.reward(feat).squeeze(-1)  # (H, N)
        discount = imagined_discount(wm.cont, feat, is_terminal, self.discount)  # (H, N)
        value = self.slow_critic(feat).squeeze(-1)  # (H, N): the slow target (slow_actor/value_target)
        target = lambda_return(
            reward[:-1], value[:-1], discount[:-1], value[-1], self.lam, self.official_order
        )  # (H-1, N)
        # Weight of each step: the probability of still being in the episode (shifted discounts).
        weights = torch.cumprod(torch.cat([torch.ones_like(discount[:1]), discount[:-2]], 0), 0).detach()
        # imag_gradient 'dynamics': maximise the lambda-returns by backpropagating through the model.
        actor_loss = -(weights * (target + self.entropy * ent)).mean()
        critic_pred = self.critic(feat[:-1].detach()).squeeze(-1)  # (H-1, N)
        critic_loss = (weights * 0.5 * (critic_pred - target.detach()).square()).mean()
        metrics = {
            "actor_entropy": ent.mean(), "action_std": std.mean(), "imag_reward": reward.mean(),
            "imag_return": target[0].mean(), "imag_value": critic_pred.mean(),
            "critic_target": target.mean(),
        }  # fmt: skip
        return {"actor": actor_loss, "critic": critic_loss}, {k: v.detach() for k, v in metrics.items()}
