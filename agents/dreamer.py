"""Online Dreamer (DreamerV2, continuous control) and DisWM (Wang et al., ICCV 2025) in one file.

Read top to bottom: config and presets, networks (actor, critic), sequence replay, the update
(world model, then imagined actor-critic with lambda-returns and a slow critic target), the
training loop, and the policy used by ``rlkd eval``/``rlkd collect``.

Agents served by this module (``--agent``):

* ``dreamer`` - DreamerV2 from scratch (the paper's DreamerV2 baseline);
* ``diswm``   - the same agent whose ``finetune`` mode resolves to ``distill``: a frozen teacher
  encoder (from ``--pretrained RUN_DIR``, made by ``rlkd pretrain``) is distilled into the student's
  beta-VAE latent with weight eta (Sec. 3.2 of the paper);
* ``--finetune naive`` - naive fine-tuning baseline: the student starts from the pretrained
  encoder, RSSM and decoder, with no distillation.

``agent="diswm"`` alone flips ``finetune: auto`` to distill.
"""

from __future__ import annotations

import copy
import dataclasses
import time
from typing import Any

import numpy as np
import torch
from rlkd.envs.wrappers import final_observations
from torch import Tensor, nn

from rlkd import envs as rlkd_envs
from rlkd.errors import UserError
from rlkd.run import Progress, Run, rng_state, seed_everything, set_rng_state
from rlkd.world_model import (
    RSSM,
    BetaVAEEncoder,
    State,
    WorldModel,
    WorldModelConfig,
    check_compatible,
    mlp,
    model_meta,
    reconstruction_grid,
    to_torch,
)

# ============================================================================ config


@dataclasses.dataclass
class DreamerConfig(WorldModelConfig):
    """DreamerV2 / DisWM online training. Defaults are the paper's sizes (DMC, 64x64)."""

    agent: str = "dreamer"
    """dreamer (from scratch) or diswm (distillation from --pretrained)."""
    num_envs: int = 1
    """Number of parallel environments (the official code uses 1)."""
    total_steps: int = 500_000
    """Total agent steps (summed over environments; one step = action_repeat env frames)."""
    pretrained: str = ""
    """Run folder of an `rlkd pretrain` run: the teacher (diswm) or the initial weights (naive)."""
    finetune: str = "auto"
    """auto (distill for diswm, none for dreamer), distill, naive (load pretrained weights) or none."""
    eta_init: float = 0.1
    """Distillation weight at the start of distillation (paper: 0.1)."""
    eta_final: float = 0.01
    """Distillation weight after eta_decay_steps (paper: 0.01)."""
    eta_decay_steps: int = 50_000
    """Agent steps over which eta anneals linearly from eta_init to eta_final."""
    distill_delay_steps: int = 0
    """Agent steps without distillation first (0 same-domain; 50000 for cross-domain transfer)."""
    official_eta_bug: bool = False
    """Reproduce the official code: eta frozen at its initial value, teacher params in the optimizer."""
    color_switch: bool = False
    """Switch the env's distractor colour set at half of training (the official transfer setting)."""
    color_switch_to: str = "test"
    """Colour set to switch to when color_switch is on."""
    action_repeat: int = 2
    """Action repeat passed to rlkd/DMC-* envs (other envs are used as they are)."""
    prefill: int = 2_500
    """Agent steps of uniformly random actions before training starts."""
    prefill_updates: int = 100
    """Updates done once when prefill ends (the official code's `pretrain: 100`)."""
    train_every: int = 5
    """Run train_steps updates every this many agent steps."""
    train_steps: int = 1
    """Updates per training round."""
    replay_capacity: int = 1_000_000
    """Replay size in steps (shared equally among environments)."""
    imag_horizon: int = 15
    """Imagination horizon of the actor-critic."""
    discount: float = 0.99
    """Discount factor."""
    lambda_: float = 0.95
    """Lambda of the lambda-returns."""
    actor_lr: float = 8e-5
    """Adam learning rate of the actor."""
    critic_lr: float = 8e-5
    """Adam learning rate of the critic."""
    actor_entropy: float = 1e-4
    """Entropy bonus of the actor."""
    actor_min_std: float = 0.1
    """Minimum standard deviation of the truncated-normal actor."""
    slow_target_update: int = 100
    """Copy the critic into the slow target critic every this many updates."""
    pred_continue: str = "auto"
    """Learn a continue head used as imagination discount: auto (on unless DMC, whose episodes never
    terminate, as DreamerV2), on or off."""
    loss_scales: dict[str, float] = dataclasses.field(
        default_factory=lambda: {"image": 1.0, "reward": 1.0, "kl": 1.0, "continue": 1.0, "distill": 1.0,
                                 "actor": 1.0, "critic": 1.0}
    )  # fmt: skip
    """Weights of the loss dict entries (distill is additionally multiplied by eta)."""
    image_log_interval: int = 10_000
    """Log reconstructions and imagined rollouts every this many agent steps (0: never)."""
    checkpoint_replay: bool = True
    """Save the replay buffer in checkpoints so a resume continues exactly (large at paper sizes)."""

    @property
    def uses_continue(self) -> bool:
        """Resolved ``pred_continue``: AGV episodes end on collisions and goals, DMC ones never do."""
        if self.pred_continue == "auto":
            return not self.env_id.startswith("rlkd/DMC-")
        return self.pred_continue == "on"

    @property
    def mode(self) -> str:
        """Resolved fine-tuning mode: distill, naive or none."""
        if self.finetune == "auto":
            return "distill" if self.agent == "diswm" else "none"
        return self.finetune

    def validate(self) -> None:
        super().validate()
        if self.agent not in ("dreamer", "diswm"):
            raise UserError(f"agent must be dreamer or diswm for this module, got {self.agent!r}")
        if self.pred_continue not in ("auto", "on", "off"):
            raise UserError(f"--pred-continue must be auto, on or off, got {self.pred_continue!r}")
        if self.finetune not in ("auto", "distill", "naive", "none"):
            raise UserError(f"--finetune must be auto, distill, naive or none, got {self.finetune!r}")
        if self.mode in ("distill", "naive") and not self.pretrained:
            raise UserError(
                f"--finetune {self.mode} (agent {self.agent}) needs --pretrained RUN_DIR: a folder made by "
                "`rlkd pretrain --data DIR`"
            )
        for name in ("train_every", "train_steps", "imag_horizon", "eta_decay_steps", "slow_target_update"):
            if getattr(self, name) <= 0:
                raise UserError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")
        if self.replay_capacity < self.num_envs * (self.batch_length + 1):
            raise UserError("--replay-capacity must hold at least batch_length + 1 steps per environment")
        unknown = set(self.loss_scales) - {"image", "reward", "kl", "continue", "distill", "actor", "critic"}
        if unknown:
            raise UserError(f"--loss-scales has unknown keys {sorted(unknown)}")


CONFIG = DreamerConfig

PRESETS: dict[str, dict[str, Any]] = {
    # Tiny: a few hundred env steps in well under 30 s on CPU.
    "debug": {
        "total_steps": 200, "num_envs": 1, "prefill": 50, "prefill_updates": 2, "train_every": 25,
        "batch_size": 4, "batch_length": 8, "deter": 32, "stoch": 8, "hidden": 32, "units": 32,
        "cnn_depth": 4,
        "imag_horizon": 5, "replay_capacity": 10_000, "checkpoint_interval": 100, "log_interval": 50,
        "image_log_interval": 100, "eta_decay_steps": 200,
    },
    # The paper's DMC settings (DreamerV2 sizes; these equal the dataclass defaults).
    "paper": {
        "batch_size": 50, "batch_length": 50, "deter": 200, "stoch": 50, "units": 400, "z_dim": 20,
        "beta": 0.015, "action_repeat": 2, "train_every": 5, "prefill": 2_500, "num_envs": 1,
    },
}  # fmt: skip
"""Same presets for ``--agent diswm``; the mode comes from ``agent`` through ``finetune: auto``."""


def label(cfg: DreamerConfig) -> str:
    """Run-folder label: dreamer, diswm or naive-ft."""
    return {"distill": "diswm", "naive": "naive-ft", "none": "dreamer"}[cfg.mode]


def eta_schedule(cfg: DreamerConfig, step: int) -> float:
    """Distillation weight at agent step ``step`` (the paper's intent: a real annealing).

    0 during ``distill_delay_steps`` (cross-domain), then linear from ``eta_init`` to ``eta_final``
    over ``eta_decay_steps``, then constant. The official code (``models.py``,
    ``WorldModel._train``) uses ``0.1 * max(1 - step / 50000, 0.1)`` same-domain and
    ``0.1 * max(2 - step / 50000, 0.1)`` after 50k steps cross-domain: the same shape.
    """
    if cfg.mode != "distill" or step < cfg.distill_delay_steps:
        return 0.0
    frac = min(1.0, (step - cfg.distill_delay_steps) / cfg.eta_decay_steps)
    return cfg.eta_init + (cfg.eta_final - cfg.eta_init) * frac


# ============================================================================ behaviour networks


class Actor(nn.Module):
    """Truncated-normal policy on [-1, 1] (dreamer-torch ``trunc_normal``): feat (..., F) -> (..., A)."""

    def __init__(self, feat: int, action_dim: int, units: int, min_std: float) -> None:
        super().__init__()
        self.net = mlp(feat, units, 4, 2 * action_dim)
        self.min_std = min_std

    def forward(self, feat: Tensor) -> tuple[Tensor, Tensor]:
        mean, std = self.net(feat).chunk(2, -1)
        return torch.tanh(mean), 2.0 * torch.sigmoid(std / 2.0) + self.min_std

    def sample(self, feat: Tensor, deterministic: bool = False) -> tuple[Tensor, Tensor, Tensor]:
        """Returns (action, log-prob-free entropy (...), mean). Samples are clipped with a straight-through
        gradient, as dreamer-torch's ``SafeTruncatedNormal`` (entropy of the untruncated Normal)."""
        mean, std = self(feat)
        if deterministic:
            return mean, torch.zeros(mean.shape[:-1], device=mean.device), mean
        raw = mean + std * torch.randn_like(std)
        clipped = raw.clamp(-1.0 + 1e-6, 1.0 - 1e-6)
        action = raw + (clipped - raw).detach()
        entropy = (0.5 + 0.5 * np.log(2 * np.pi) + std.log()).sum(-1)
        return action, entropy, mean


def lambda_return(reward: Tensor, value: Tensor, discount: Tensor, bootstrap: Tensor, lam: float) -> Tensor:
    """TD(lambda) returns, computed backwards in time.

    Args:
        reward, value, discount: (H, N) for imagined steps 0..H-1.
        bootstrap: (N,) value after the last step.

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
    return torch.stack(out[::-1], 0)


# ============================================================================ replay


class Replay:
    """Per-env ring buffers of steps; samples (B, T) windows that never cross the write pointer.

    Step t holds obs t, the action that led to it, the reward received on arriving, and flags
    (dreamer-torch layout). Windows may span episode boundaries; ``is_first`` resets the RSSM.
    """

    def __init__(
        self, num_envs: int, capacity: int, obs_shape: tuple[int, ...], action_dim: int, seed: int
    ) -> None:
        self.n, self.cap = num_envs, capacity // num_envs
        self.data = {
            "image": np.zeros((num_envs, self.cap, *obs_shape), np.uint8),
            "action": np.zeros((num_envs, self.cap, action_dim), np.float32),
            "reward": np.zeros((num_envs, self.cap), np.float32),
            "is_first": np.zeros((num_envs, self.cap), bool),
            "is_terminal": np.zeros((num_envs, self.cap), bool),
        }
        self.ptr = np.zeros(num_envs, np.int64)
        self.filled = np.zeros(num_envs, np.int64)
        self.rng = np.random.default_rng(seed)

    def add(
        self, i: int, obs: np.ndarray, action: np.ndarray, reward: float, first: bool, terminal: bool
    ) -> None:
        p = self.ptr[i]
        d = self.data
        d["image"][i, p], d["action"][i, p], d["reward"][i, p] = obs, action, reward
        d["is_first"][i, p], d["is_terminal"][i, p] = first, terminal
        self.ptr[i] = (p + 1) % self.cap
        self.filled[i] = min(self.filled[i] + 1, self.cap)

    def has_window(self, length: int) -> bool:
        """Whether some env holds at least ``length`` consecutive entries to sample from."""
        return bool((self.filled >= length).any())

    def sample(self, batch: int, length: int) -> dict[str, np.ndarray]:
        """(B, T) batch of numpy arrays; ``is_first`` is True at every window's first step."""
        starts_per_env = np.maximum(self.filled - length + 1, 0)
        if starts_per_env.sum() == 0:
            raise RuntimeError("replay has no complete window yet")
        env = self.rng.choice(self.n, size=batch, p=starts_per_env / starts_per_env.sum())
        k = self.rng.integers(0, starts_per_env[env])
        base = np.where(self.filled[env] < self.cap, 0, self.ptr[env])
        idx = (base[:, None] + k[:, None] + np.arange(length)[None]) % self.cap  # (B, T)
        out = {key: arr[env[:, None], idx] for key, arr in self.data.items()}
        out["is_first"][:, 0] = True
        return out

    def state_dict(self) -> dict[str, Any]:
        """Filled part of the buffers as tensors (ring order kept) plus pointers and sampler state."""
        keep = int(self.filled.max())
        return {
            "data": {k: torch.from_numpy(v[:, :keep].copy()) for k, v in self.data.items()},
            "ptr": self.ptr.tolist(), "filled": self.filled.tolist(),
            "rng": repr(self.rng.bit_generator.state),
        }  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for k, v in state["data"].items():
            self.data[k][:, : v.shape[1]] = v.numpy()
        self.ptr[:] = state["ptr"]
        self.filled[:] = state["filled"]
        import ast

        self.rng.bit_generator.state = ast.literal_eval(state["rng"])


# ============================================================================ agent


class Agent(nn.Module):
    """World model + actor + critic (+ slow critic); the teacher lives outside ``parameters()``.

    Args:
        cfg: The run's config.
        action_dim: Continuous action size.
        teacher: Frozen pretrained encoder for DisWM, or None.
    """

    def __init__(self, cfg: DreamerConfig, action_dim: int, teacher: BetaVAEEncoder | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.wm = WorldModel(cfg, action_dim, pred_continue=cfg.uses_continue)
        feat = cfg.deter + cfg.stoch
        self.actor = Actor(feat, action_dim, cfg.units, cfg.actor_min_std)
        self.critic = mlp(feat, cfg.units, 3, 1)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        # Stored via object.__setattr__ so the teacher is neither a submodule (never in
        # parameters()/optimizers/state_dict of the student) nor moved by .train().
        object.__setattr__(self, "teacher", teacher)
        if teacher is not None:
            teacher.requires_grad_(False).eval()

    def policy_step(
        self, state: State, prev_action: Tensor, obs: Tensor, first: Tensor, deterministic: bool
    ) -> tuple[State, Tensor]:
        """One acting step. obs uint8 (N, 64, 64, 3), first bool (N,) -> (new state, action (N, A))."""
        _, _, z = self.wm.encoder(obs, sample=not deterministic)
        state, _ = self.wm.rssm.obs_step(state, prev_action, z, first)
        action, _, _ = self.actor.sample(RSSM.feat(state), deterministic)
        return state, action


def build_optimizers(agent: Agent, cfg: DreamerConfig) -> dict[str, torch.optim.Optimizer]:
    """Adam for model, actor and critic (eps 1e-5, dreamer-torch)."""
    model_params = list(agent.wm.parameters())
    if cfg.official_eta_bug and agent.teacher is not None:
        # Official code (models.py, WorldModel.__init__): the teacher `encoder_distillation` is a
        # submodule, so `self.parameters()` hands its (requires_grad=False) weights to the model
        # optimizer. They get no gradients, so Adam leaves them unchanged, but they are listed.
        model_params += list(agent.teacher.parameters())
    return {
        "model": torch.optim.Adam(model_params, lr=cfg.model_lr, eps=1e-5, fused=True),
        "actor": torch.optim.Adam(agent.actor.parameters(), lr=cfg.actor_lr, eps=1e-5, fused=True),
        "critic": torch.optim.Adam(agent.critic.parameters(), lr=cfg.critic_lr, eps=1e-5, fused=True),
    }


def load_pretrained(cfg: DreamerConfig, action_dim: int) -> dict[str, Tensor]:
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


def make_teacher(cfg: DreamerConfig, weights: dict[str, Tensor]) -> BetaVAEEncoder:
    teacher = BetaVAEEncoder(cfg.z_dim, cfg.cnn_depth)
    teacher.load_state_dict({k[len("encoder.") :]: v for k, v in weights.items() if k.startswith("encoder.")})
    return teacher.to(cfg.device)


def naive_init(agent: Agent, weights: dict[str, Tensor]) -> None:
    """Copy the pretrained encoder, RSSM and decoder into the student (naive fine-tuning).

    The action-free RSSM's input layer has no action columns: those are zero-initialised, so the
    student starts as the pretrained action-free model (like the official code padding actions).
    """
    own = agent.wm.state_dict()
    for key, value in weights.items():
        if key not in own:
            continue
        if key == "rssm.img_in.0.weight" and own[key].shape != value.shape:
            new = torch.zeros_like(own[key])
            new[:, : value.shape[1]] = value
            own[key] = new
        else:
            own[key] = value
    agent.wm.load_state_dict(own)


def clip_step(opt: torch.optim.Optimizer, loss: Tensor, params: list[Tensor], clip: float) -> Tensor:
    """Backward into ``params`` only, clip, step. Returns the grad norm (a tensor: no sync)."""
    opt.zero_grad(set_to_none=True)
    loss.backward(inputs=params)
    norm = torch.nn.utils.clip_grad_norm_(params, clip)
    opt.step()
    return norm


def update(
    agent: Agent, opts: dict[str, torch.optim.Optimizer], batch: dict[str, Tensor], eta: float
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """One world-model + behaviour update. Returns (scaled losses, metrics), all detached tensors."""
    cfg = agent.cfg
    scales = cfg.loss_scales
    # ---- world model (encoder, RSSM, decoder, heads) + DisWM distillation
    wm_losses, post, metrics = agent.wm.loss(batch, agent.teacher, eta)
    weighted = {k: v * scales.get(k, 1.0) for k, v in wm_losses.items()}
    if "distill" in weighted:
        weighted["distill"] = weighted["distill"] * eta
    model_params = [p for p in agent.wm.parameters()]
    clip_step(opts["model"], sum(weighted.values()), model_params, cfg.grad_clip)

    # ---- imagination from every posterior state (B*T starts), actor gradients through dynamics
    start = {k: v.reshape(-1, v.shape[-1]) for k, v in post.items()}  # (N, .)
    rssm = agent.wm.rssm
    feats, ents = [RSSM.feat(start)], []
    state = start
    for _ in range(cfg.imag_horizon):
        action, ent, _ = agent.actor.sample(feats[-1].detach())  # behaviour stop-grad on the input
        state = rssm.img_step(state, action)
        feats.append(RSSM.feat(state))
        ents.append(ent)
    feat = torch.stack(feats, 0)  # (H+1, N, F)
    reward = agent.wm.reward(feat).squeeze(-1)  # (H+1, N)
    if agent.wm.cont is not None:
        discount = cfg.discount * torch.sigmoid(agent.wm.cont(feat).squeeze(-1))
    else:
        discount = torch.full_like(reward, cfg.discount)
    value = agent.slow_critic(feat).squeeze(-1)  # (H+1, N) slow target (DreamerV2 slow_value_target)
    target = lambda_return(reward[:-1], value[:-1], discount[:-1], value[-1], cfg.lambda_)  # (H, N)
    weights = torch.cumprod(
        torch.cat([torch.ones_like(discount[:1]), discount[:-2]], 0), 0
    ).detach()  # (H, N)
    entropy = torch.stack(ents, 0)  # (H, N)
    # imag_gradient 'dynamics' (DreamerV2 for continuous control): maximise returns directly.
    actor_loss = -(weights * (target + cfg.actor_entropy * entropy)).mean()
    critic_pred = agent.critic(feat[:-1].detach()).squeeze(-1)
    critic_loss = (weights * 0.5 * (critic_pred - target.detach()).square()).mean()
    losses = {
        "actor": actor_loss * scales.get("actor", 1.0),
        "critic": critic_loss * scales.get("critic", 1.0),
    }
    clip_step(opts["actor"], losses["actor"], list(agent.actor.parameters()), cfg.grad_clip)
    clip_step(opts["critic"], losses["critic"], list(agent.critic.parameters()), cfg.grad_clip)
    out = {k: v.detach() for k, v in {**wm_losses, **losses}.items()}
    metrics.update({"imag_reward": reward.detach().mean(), "imag_value": value.detach().mean(),
                    "actor_entropy": entropy.detach().mean()})  # fmt: skip
    return out, metrics


def check_color_switch(envs: Any) -> None:
    """Fail before training, not at half of it, when the env has no colour set to switch."""
    target = envs.unwrapped
    subs = getattr(target, "envs", [])
    if not hasattr(target, "set_color_set") and not (subs and hasattr(subs[0].unwrapped, "set_color_set")):
        raise UserError(
            "this environment has no colour distractor to switch (set_color_set); drop --color-switch"
        )


def set_color_set(envs: Any, name: str) -> None:
    """Switch the distractor colour set of every sub-environment (AGV: native; DMC: per env)."""
    target = envs.unwrapped
    if hasattr(target, "set_color_set"):
        target.set_color_set(name)
    elif hasattr(target, "call"):
        target.call("set_color_set", name)
    else:
        raise UserError(
            "this environment has no colour distractor to switch (set_color_set); drop --color-switch"
        )


def env_kwargs_for(cfg: DreamerConfig) -> dict[str, Any]:
    kwargs = dict(cfg.env_kwargs)
    if cfg.env_id.startswith("rlkd/DMC-"):
        kwargs.setdefault("action_repeat", cfg.action_repeat)
    return kwargs


@torch.no_grad()
def log_images(run: Run, agent: Agent, batch: dict[str, Tensor], recon: Tensor, step: int) -> None:
    """Reconstructions and an open-loop imagined rollout (5 context frames, then the prior)."""
    run.writer.add_images("world_model/reconstruction", reconstruction_grid(batch["image"], recon), step)
    wm = agent.wm
    ctx = min(5, batch["image"].shape[1] - 1)
    _, _, z = wm.encoder(batch["image"][:1, :ctx], sample=False)
    post, _ = wm.rssm.observe(z, batch["action"][:1, :ctx], batch["is_first"][:1, :ctx])
    state = {k: v[:, -1] for k, v in post.items()}
    frames = []
    for t in range(ctx, batch["image"].shape[1]):
        state = wm.rssm.img_step(state, batch["action"][:1, t], sample=False)
        frames.append(wm.decoder(RSSM.feat(state))[0])
    imag = (torch.stack(frames) + 0.5).clamp(0, 1)[:8]
    run.writer.add_images("world_model/imagined", imag.permute(0, 3, 1, 2), step)


def train(cfg: DreamerConfig, run: Run, checkpoint: dict | None) -> None:
    """Train online; ``checkpoint`` (a payload of this run) resumes from its step.

    On resume every weight, optimizer, counter, RNG state and (with ``checkpoint_replay``) the
    replay buffer are restored; environments restart their episodes.
    """
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    seed_everything(cfg.seed)
    device = cfg.device
    envs = rlkd_envs.make_vec(cfg.env_id, cfg.num_envs, cfg.seed, cfg.env_backend, **env_kwargs_for(cfg))
    obs_space, act_space = envs.single_observation_space, envs.single_action_space
    if obs_space.dtype != np.uint8 or tuple(obs_space.shape) != (cfg.image_size, cfg.image_size, 3):
        envs.close()
        raise UserError(
            f"{cfg.env_id} observations are {obs_space}; Dreamer needs uint8 "
            f"({cfg.image_size}, {cfg.image_size}, 3) "
            "pixels (use a *-Pixels-v0 or rlkd/DMC-* id)"
        )
    if not (np.all(act_space.low == -1.0) and np.all(act_space.high == 1.0)):
        envs.close()
        raise UserError(f"{cfg.env_id} actions are {act_space}; Dreamer needs continuous Box(-1, 1) actions")
    action_dim = int(np.prod(act_space.shape))

    teacher = None
    if cfg.mode in ("distill", "naive") and checkpoint is None:
        weights = load_pretrained(cfg, action_dim)
    if cfg.mode == "distill":
        teacher = BetaVAEEncoder(cfg.z_dim, cfg.cnn_depth).to(device)
        if checkpoint is None:
            teacher = make_teacher(cfg, weights)
    agent = Agent(cfg, action_dim, teacher).to(device)
    if cfg.mode == "naive" and checkpoint is None:
        naive_init(agent, weights)
    opts = build_optimizers(agent, cfg)
    replay = Replay(cfg.num_envs, cfg.replay_capacity, tuple(obs_space.shape), action_dim, cfg.seed)

    step, updates, switched, train_credit = 0, 0, False, 0
    if checkpoint is not None:
        st = checkpoint["state"]
        agent.load_state_dict(st["agent"])
        if teacher is not None:
            teacher.load_state_dict(st["teacher"])
        for name, opt in opts.items():
            opt.load_state_dict(st["opts"][name])
        if "replay" in st:
            replay.load_state_dict(st["replay"])
        set_rng_state(st["rng"])
        step, updates, switched = int(checkpoint["step"]), int(st["updates"]), bool(st["switched"])
        train_credit = int(st["train_credit"])
    # Official code (models.py, WorldModel.__init__): `self._step = step` copies an int once, so
    # the eta formula always sees the step at which the model was built (after prefill): eta is
    # frozen at its initial value. `official_eta_bug` reproduces that.
    frozen_eta = eta_schedule(cfg, max(step, cfg.prefill))
    if cfg.color_switch and not switched:
        check_color_switch(envs)
    if switched:
        set_color_set(envs, cfg.color_switch_to)

    obs, _ = envs.reset(seed=cfg.seed + step)
    envs.action_space.seed(cfg.seed + step)
    first = np.ones(cfg.num_envs, bool)
    zero_act = np.zeros(action_dim, np.float32)
    for i in range(cfg.num_envs):
        replay.add(i, obs[i], zero_act, 0.0, True, False)
    latent = agent.wm.rssm.initial(cfg.num_envs, device)
    prev_action = torch.zeros(cfg.num_envs, action_dim, device=device)

    progress = Progress(cfg.total_steps, step, label(cfg))
    last_log = last_img = step
    last_ckpt = step
    t0, s0 = time.time(), step
    returns: list[float] = []
    lengths: list[float] = []
    successes: list[float] = []
    losses: dict[str, Tensor] = {}
    metrics: dict[str, Tensor] = {}
    prefill_done = step >= cfg.prefill
    while step < cfg.total_steps:
        # ---- act (the latent follows the observations during prefill too, so the first policy
        # step after it starts from a filtered state, not from zeros mid-episode)
        with torch.no_grad():
            obs_t = torch.as_tensor(obs, device=device)
            first_t = torch.as_tensor(first, device=device)
            latent, act_t = agent.policy_step(latent, prev_action, obs_t, first_t, deterministic=False)
        if step < cfg.prefill:
            action = envs.action_space.sample().astype(np.float32)
        else:
            action = act_t.cpu().numpy().astype(np.float32)
        next_obs, reward, term, trunc, info = envs.step(action)
        done = np.logical_or(term, trunc)
        real_next = final_observations(info, next_obs) if done.any() else next_obs
        for i in range(cfg.num_envs):
            if done[i]:
                replay.add(i, real_next[i], action[i], float(reward[i]), False, bool(term[i]))
                replay.add(i, next_obs[i], zero_act, 0.0, True, False)
            else:
                replay.add(i, next_obs[i], action[i], float(reward[i]), False, False)
        if "episode" in info:
            ended = np.flatnonzero(info["_episode"])
            returns.extend(info["episode"]["r"][ended].astype(float).tolist())
            lengths.extend(info["episode"]["l"][ended].astype(float).tolist())
            if "success" in info["episode"]:
                successes.extend(info["episode"]["success"][ended].astype(float).tolist())
        prev_action = torch.as_tensor(action, device=device) * torch.as_tensor(~done, device=device)[:, None]
        obs, first = next_obs, done
        step += cfg.num_envs

        # ---- colour-distractor switch at half of training (official dreamer.py main loop)
        if cfg.color_switch and not switched and step >= cfg.total_steps // 2:
            set_color_set(envs, cfg.color_switch_to)
            switched = True
            run.log_scalars(step, {"charts/color_switch": 1.0})

        # ---- learn
        eta = frozen_eta if cfg.official_eta_bug else eta_schedule(cfg, step)
        if step >= cfg.prefill:
            n_updates = 0
            if not prefill_done:
                prefill_done, n_updates = True, cfg.prefill_updates
            train_credit += cfg.num_envs
            while train_credit >= cfg.train_every:
                train_credit -= cfg.train_every
                n_updates += cfg.train_steps
            if not replay.has_window(cfg.batch_length):
                # After a resume without the saved replay (or with many envs sharing the prefill),
                # wait until some env has a whole batch_length window instead of failing.
                n_updates = 0
            for _ in range(n_updates):
                batch = to_torch(replay.sample(cfg.batch_size, cfg.batch_length), device)
                losses, metrics = update(agent, opts, batch, eta)
                updates += 1
                if updates % cfg.slow_target_update == 0:
                    agent.slow_critic.load_state_dict(agent.critic.state_dict())
            if cfg.image_log_interval and n_updates and step - last_img >= cfg.image_log_interval:
                last_img = step
                log_images(run, agent, batch, metrics["recon"], step)

        # ---- log
        if step - last_log >= cfg.log_interval or step >= cfg.total_steps:
            last_log = step
            sps = (step - s0) / max(time.time() - t0, 1e-9)
            scalars: dict[str, float | Tensor] = {
                "charts/SPS": sps,
                "world_model/eta": eta,
                "charts/updates": updates,
            }
            if returns:
                scalars["charts/episodic_return"] = float(np.mean(returns))
                scalars["charts/episodic_length"] = float(np.mean(lengths))
            if successes:
                scalars["charts/success_rate"] = float(np.mean(successes))
            for key in ("image", "reward", "kl", "continue", "distill"):
                if key in losses:
                    scalars[f"world_model/{key}"] = losses[key]
            if "vae_kl" in metrics:
                scalars["world_model/vae_kl"] = metrics["vae_kl"]
                scalars["world_model/kl_value"] = metrics["kl_value"]
            for key in ("actor", "critic"):
                if key in losses:
                    scalars[f"losses/{key}"] = losses[key]
            run.log_scalars(step, scalars)
            progress.update(step, SPS=sps, ret=float(np.mean(returns)) if returns else None)
            returns.clear()
            lengths.clear()
            successes.clear()

        # ---- checkpoint
        if step - last_ckpt >= cfg.checkpoint_interval or step >= cfg.total_steps:
            last_ckpt = step
            state: dict[str, Any] = {
                "agent": agent.state_dict(), "opts": {k: o.state_dict() for k, o in opts.items()},
                "rng": rng_state(), "updates": updates, "switched": switched, "train_credit": train_credit,
                "meta": model_meta(cfg), "action_dim": action_dim,
            }  # fmt: skip
            if teacher is not None:
                state["teacher"] = teacher.state_dict()
            if cfg.checkpoint_replay:
                state["replay"] = replay.state_dict()
            run.save_checkpoint(step, state, keep=cfg.keep_checkpoints)
    progress.close()
    envs.close()
    run.close()


# ============================================================================ policy for eval / collect


class Policy:
    """Acts with a trained agent, keeping one RSSM latent per environment."""

    def __init__(self, agent: Agent, device: str) -> None:
        self.agent, self.device = agent.eval(), device
        self.latent: State | None = None
        self.prev_action: Tensor | None = None

    @torch.no_grad()
    def act(self, obs: np.ndarray, first: np.ndarray, deterministic: bool) -> np.ndarray:
        """obs uint8 (N, 64, 64, 3), first bool (N,) -> actions float32 (N, A)."""
        n = obs.shape[0]
        rssm = self.agent.wm.rssm
        if self.latent is None or self.latent["deter"].shape[0] != n:
            self.latent = rssm.initial(n, self.device)
            self.prev_action = torch.zeros(n, rssm.action_dim, device=self.device)
            first = np.ones(n, bool)
        obs_t = torch.as_tensor(obs, device=self.device)
        first_t = torch.as_tensor(np.asarray(first, bool), device=self.device)
        self.latent, action = self.agent.policy_step(
            self.latent, self.prev_action, obs_t, first_t, deterministic
        )
        self.prev_action = action
        return action.cpu().numpy().astype(np.float32)


def load_policy(run: Run, checkpoint: dict, device: str) -> Policy:
    """Rebuild the agent of ``run`` from ``checkpoint`` (a payload of that run)."""
    from rlkd.config import from_dict

    cfg = from_dict(DreamerConfig, {k: v for k, v in checkpoint["config"].items() if k != "pretrained"}
                    | {"finetune": "none", "device": device}, f"{run.path}/config.yaml")  # fmt: skip
    state = checkpoint["state"]
    agent = Agent(cfg, int(state["action_dim"])).to(device)
    agent.load_state_dict(state["agent"])
    return Policy(agent, device)


__all__ = [
    "CONFIG", "PRESETS", "Agent", "DreamerConfig", "Policy", "eta_schedule", "label",
    "lambda_return", "load_policy", "train", "update",
]  # fmt: skip
