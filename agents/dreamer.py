"""Online Dreamer (DreamerV2, continuous control) and DisWM (Wang et al., ICCV 2025) in one file.

Read top to bottom: config and presets, the agent (world model in ``rlkd.world_model``, behaviour
in ``rlkd.behaviour``), the update (world model, then imagined actor-critic with lambda-returns and
a slow critic target), the environment checks, the training loop (replay in ``rlkd.replay``), and
the policy used by ``rlkd eval``/``rlkd collect``.

Agents served by this module (``--agent``):

* ``dreamer`` - DreamerV2 from scratch, as the official DisWM code's baseline (``beta_vae: False``):
  DreamerV2's conv encoder/decoder for 64x64 pixels, MLPs for vector observations;
* ``diswm``   - the same agent whose ``finetune`` mode resolves to ``distill``: a teacher encoder
  (from ``--pretrained RUN_DIR``, made by ``rlkd pretrain``; frozen unless
  ``--official-teacher-drift``) is distilled into the student's beta-VAE latent with weight eta
  (Sec. 3.2 of the paper);
* ``--finetune naive`` - naive fine-tuning baseline: the student starts from the pretrained
  encoder, RSSM and decoder, with no distillation.

``agent="diswm"`` alone flips ``finetune: auto`` to distill.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from rlkd.envs.wrappers import final_observations
from torch import Tensor, nn

from rlkd import envs as rlkd_envs
from rlkd.behaviour import Behaviour
from rlkd.config import check_ranges
from rlkd.errors import UserError, describe_space
from rlkd.guard import DIVERGED, UpdateGuard, check_finite
from rlkd.replay import Replay
from rlkd.rssm import RSSM, State
from rlkd.run import Progress, Run, load_state, rng_state, seed_everything, set_rng_state
from rlkd.wm_codecs import BetaVAEEncoder, preprocess
from rlkd.world_model import (
    Distillation,
    WorldModel,
    WorldModelConfig,
    check_compatible,
    model_meta,
    obs_kind,
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
    """eta = eta_init * max(1 - (step - delay) / eta_decay_steps, eta_final / eta_init) (official formula)."""
    distill_delay_steps: int = 0
    """Agent steps without distillation first (0 same-domain; 50000 for cross-domain transfer)."""
    distill_latents: str = "samples"
    """samples: the encoders' reparameterised z, as the official code; means: the posterior means."""
    distill_reduction: str = "batchmean"
    """batchmean: the official kl_div reduction on (B, T, Z), summed over time; mean: per-step mean."""
    official_frozen_eta: bool = False
    """Reproduce the official eta, frozen at its value at the step the world model was built."""
    official_teacher_drift: bool = False
    """Reproduce the official teacher, trained by the distillation gradient (and in the optimizer)."""
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
    """Imagined states per start state, the start included (the official imag_horizon)."""
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
        default_factory=lambda: {"image": 1.0, "reward": 2.0, "kl": 1.0, "continue": 1.0, "distill": 1.0,
                                 "actor": 1.0, "critic": 1.0}
    )  # fmt: skip
    """Weights of the loss dict entries (distill is additionally multiplied by eta; reward 2 is the
    official DMC config's reward_scale)."""
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
        check_ranges(
            self,
            positive=("train_every", "train_steps", "imag_horizon", "eta_decay_steps", "slow_target_update",
                      "actor_lr", "critic_lr", "actor_min_std", "action_repeat"),
            non_negative=("eta_init", "eta_final", "distill_delay_steps", "prefill", "prefill_updates",
                          "actor_entropy", "image_log_interval"),
            unit=("discount", "lambda_"),
        )  # fmt: skip
        if self.imag_horizon < 2:
            raise UserError(f"--imag-horizon counts the start state: at least 2, got {self.imag_horizon}")
        if self.replay_capacity < self.num_envs * (self.batch_length + 1):
            raise UserError("--replay-capacity must hold at least batch_length + 1 steps per environment")
        if self.distill_latents not in ("samples", "means"):
            raise UserError(f"--distill-latents must be samples or means, got {self.distill_latents!r}")
        if self.distill_reduction not in ("batchmean", "mean"):
            raise UserError(f"--distill-reduction must be batchmean or mean, got {self.distill_reduction!r}")
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
    # One CPU core, ~30 minutes: small model, higher learning rates (chosen by measurement on
    # Pendulum-v1 and rlkd/PointReach-Pixels-v0, bench/bench_dreamer.py; docs/diswm.md).
    "cpu": {
        "deter": 64, "stoch": 16, "hidden": 64, "units": 64, "mlp_layers": 2, "cnn_depth": 8,
        "batch_size": 16, "batch_length": 32, "model_lr": 1e-3, "actor_lr": 3e-4, "critic_lr": 3e-4,
        "num_envs": 1, "torch_threads": 1, "total_steps": 50_000, "log_interval": 1_000,
        "checkpoint_interval": 10_000, "image_log_interval": 5_000,
    },
    # The CPU preset for 64x64 pixels: one update per env step (a train ratio of 256 replayed steps
    # per env step, the paper's is 500) on 16 x 16 windows and a shorter random prefill, so the
    # world model gets enough updates within the budget (bench/bench_dreamer.py reach).
    "cpu-pixels": {
        "deter": 64, "stoch": 16, "hidden": 64, "units": 64, "mlp_layers": 2, "cnn_depth": 8,
        "batch_size": 16, "batch_length": 16, "model_lr": 1e-3, "actor_lr": 3e-4, "critic_lr": 3e-4,
        "num_envs": 1, "torch_threads": 1, "total_steps": 12_000, "train_every": 1, "prefill": 1_000,
        "log_interval": 500, "checkpoint_interval": 4_000, "image_log_interval": 2_000,
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
    """Distillation weight at agent step ``step``: the official formula.

    ``models.py``, ``WorldModel._train``: ``eta = max(1 - step / 50000, 0.1) * 0.1`` same-domain,
    and for cross-domain transfer 0 before step 50000, then ``max(2 - step / 50000, 0.1) * 0.1``.
    With ``d = distill_delay_steps`` (0 or 50000) both read
    ``eta_init * max(1 - (step - d) / eta_decay_steps, eta_final / eta_init)``, so eta reaches
    ``eta_final`` at ``d + 0.9 * eta_decay_steps`` with the defaults.
    """
    if cfg.mode != "distill" or step < cfg.distill_delay_steps:
        return 0.0
    progress = (step - cfg.distill_delay_steps) / cfg.eta_decay_steps
    return cfg.eta_init * max(1.0 - progress, cfg.eta_final / cfg.eta_init)


# ============================================================================ agent


class Agent(nn.Module):
    """World model + behaviour (actor, critic, slow critic); the teacher lives outside ``parameters()``.

    Args:
        cfg: The run's config.
        obs_shape: (64, 64, 3) pixels or (D,) vectors.
        action_dim: Continuous action size.
        beta_vae: DisWM's beta-VAE encoder/decoder (diswm, naive fine-tuning) instead of DreamerV2's.
        teacher: Frozen pretrained encoder for DisWM, or None.
    """

    def __init__(
        self,
        cfg: DreamerConfig,
        obs_shape: tuple[int, ...],
        action_dim: int,
        beta_vae: bool = False,
        teacher: BetaVAEEncoder | None = None,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        self.wm = WorldModel(cfg, action_dim, obs_shape, beta_vae, pred_continue=cfg.uses_continue)
        self.behaviour = Behaviour(
            cfg.deter + cfg.stoch, action_dim, cfg.units, cfg.actor_min_std, cfg.imag_horizon, cfg.discount,
            cfg.lambda_, cfg.actor_entropy, cfg.slow_target_update,
        )  # fmt: skip
        # Stored via object.__setattr__ so the teacher is neither a submodule (never in
        # parameters()/state_dict of the student) nor moved by .train().
        object.__setattr__(self, "teacher", teacher)
        if teacher is not None:
            # Official code: `tools.RequiresGrad(self)` in `WorldModel._train` re-enables gradients on
            # every submodule, `encoder_distillation` included, so its teacher drifts.
            teacher.requires_grad_(cfg.official_teacher_drift).eval()

    def policy_step(
        self, state: State, prev_action: Tensor, obs: Tensor, first: Tensor, deterministic: bool
    ) -> tuple[State, Tensor]:
        """One acting step. obs (N, *obs_shape), first bool (N,) -> (new state, action (N, A) in [-1, 1]).

        The posterior is sampled even when ``deterministic`` (the official ``collect_dyn_sample``);
        only the action is the actor's mode then.
        """
        embed, _, _ = self.wm.encode(preprocess(obs), sample=not deterministic)
        state = self.wm.rssm.obs_step(state, prev_action, embed, first)
        action, _, _ = self.behaviour.actor.sample(RSSM.feat(state), deterministic)
        return state, action


def build_optimizers(agent: Agent, cfg: DreamerConfig) -> dict[str, torch.optim.Optimizer]:
    """Adam for model, actor and critic (eps 1e-5, dreamer-torch)."""
    model_params = list(agent.wm.parameters())
    if cfg.official_teacher_drift and agent.teacher is not None:
        # Official code (models.py, WorldModel.__init__): the teacher `encoder_distillation` is a
        # submodule, so `self.parameters()` hands its weights to the model optimizer.
        model_params += list(agent.teacher.parameters())
    beh = agent.behaviour
    return {
        "model": torch.optim.Adam(model_params, lr=cfg.model_lr, eps=1e-5, fused=True),
        "actor": torch.optim.Adam(beh.actor.parameters(), lr=cfg.actor_lr, eps=1e-5, fused=True),
        "critic": torch.optim.Adam(beh.critic.parameters(), lr=cfg.critic_lr, eps=1e-5, fused=True),
    }


def load_pretrained(cfg: DreamerConfig) -> dict[str, Tensor]:
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


def clip_step(
    opt: torch.optim.Optimizer, losses: dict[str, Tensor], params: list[Tensor], clip: float,
    guard: UpdateGuard | None, name: str,
) -> Tensor:  # fmt: skip
    """Backward the sum of ``losses`` into ``params`` only, clip, and step unless ``guard`` finds a
    NaN/inf loss or gradient. Returns the grad norm before clipping."""
    opt.zero_grad(set_to_none=True)
    sum(losses.values()).backward(inputs=params)
    norm = torch.nn.utils.clip_grad_norm_(params, clip)
    if guard is None or guard.ok(losses, {name: norm}):
        opt.step()
    return norm


def update(
    agent: Agent, opts: dict[str, torch.optim.Optimizer], batch: dict[str, Tensor], eta: float,
    guard: UpdateGuard | None = None,
) -> tuple[dict[str, Tensor], dict[str, Tensor]]:  # fmt: skip
    """One world-model + behaviour update. Returns (scaled losses, metrics), all detached tensors.

    ``guard`` checks each of the three optimizer steps for NaN/inf (None: no check, for tests)."""
    cfg = agent.cfg
    scales = cfg.loss_scales
    # ---- world model (encoder, RSSM, decoder, heads) + DisWM distillation
    distill = None
    if agent.teacher is not None and eta > 0.0:
        distill = Distillation(
            agent.teacher, samples=cfg.distill_latents == "samples",
            per_step=cfg.distill_reduction == "mean", drift=cfg.official_teacher_drift,
        )  # fmt: skip
    wm_losses, post, metrics = agent.wm.loss(batch, distill)
    weighted = {k: v * scales.get(k, 1.0) for k, v in wm_losses.items()}
    if "distill" in weighted:
        weighted["distill"] = weighted["distill"] * eta
    model_params = [p for g in opts["model"].param_groups for p in g["params"]]
    metrics["grad_norm_model"] = clip_step(
        opts["model"], weighted, model_params, cfg.grad_clip, guard, "world model"
    )
    metrics["reward_var"] = batch["reward"].var()
    # ---- behaviour: imagination from every posterior state (B*T starts)
    beh = agent.behaviour
    start = {k: v.reshape(-1, v.shape[-1]) for k, v in post.items()}  # (N, .)
    beh_losses, beh_metrics = beh.losses(agent.wm, start, batch["is_terminal"].reshape(-1))
    beh_losses = {k: v * scales.get(k, 1.0) for k, v in beh_losses.items()}
    for name, net in (("actor", beh.actor), ("critic", beh.critic)):
        metrics[f"grad_norm_{name}"] = clip_step(
            opts[name], {name: beh_losses[name]}, list(net.parameters()), cfg.grad_clip, guard, name
        )
    out = {k: v.detach() for k, v in {**weighted, **beh_losses}.items()}
    return out, {**metrics, **beh_metrics}


# ============================================================================ environments


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


def action_bounds(space: gym.Space, env_id: str) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) of a bounded continuous action space; the actor's [-1, 1] maps onto it."""
    if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
        raise UserError(
            f"{env_id} actions are {describe_space(space)}; Dreamer supports continuous Box(A,) actions "
            "(use PPO for discrete actions)"
        )
    if not (np.all(np.isfinite(space.low)) and np.all(np.isfinite(space.high))):
        raise UserError(f"{env_id} actions are {describe_space(space)}; Dreamer needs finite action bounds")
    return space.low.astype(np.float32), space.high.astype(np.float32)


def to_env_action(action: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Actor actions in [-1, 1] -> the env's [low, high] (identity for Box(-1, 1))."""
    return low + (action + 1.0) * 0.5 * (high - low)


def make_envs(cfg: DreamerConfig) -> tuple[Any, tuple[np.ndarray, np.ndarray]]:
    """Vector env checked for Dreamer: returns (envs, action bounds)."""
    envs = rlkd_envs.make_vec(cfg.env_id, cfg.num_envs, cfg.seed, cfg.env_backend, **env_kwargs_for(cfg))
    try:
        kind = obs_kind(envs.single_observation_space, cfg.env_id)  # raises for unsupported spaces
        if cfg.mode != "none" and kind != "image":
            raise UserError(f"--agent {cfg.agent} --finetune {cfg.mode} needs pixel observations")
        bounds = action_bounds(envs.single_action_space, cfg.env_id)
        if cfg.color_switch:
            check_color_switch(envs)
    except UserError:
        envs.close()
        raise
    return envs, bounds


# ============================================================================ training loop


class Scalars:
    """Means of the update metrics over a log interval (tensors summed: no sync per update)."""

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.count = 0

    def add(self, values: dict[str, Tensor]) -> None:
        for k, v in values.items():
            if v.dim() == 0:
                self.sums[k] = self.sums[k] + v if k in self.sums else v.clone()
        self.count += 1

    def pop(self) -> dict[str, float]:
        out = {k: float(v) / self.count for k, v in self.sums.items()}
        self.sums, self.count = {}, 0
        return out


LOSS_TAGS = ("image", "reward", "kl", "continue", "distill", "actor", "critic")
WM_TAGS = ("image_nll", "vae_kl", "kl_value", "reward_mse", "reward_var", "grad_norm_model")
BEHAVIOUR_TAGS = ("actor_entropy", "action_std", "imag_reward", "imag_return", "imag_value", "critic_target",
                  "grad_norm_actor", "grad_norm_critic")  # fmt: skip


def tagged(means: dict[str, float]) -> dict[str, float]:
    """Update means under their TensorBoard tags: losses/, world_model/, behaviour/."""
    out = {f"losses/{k}": means[k] for k in LOSS_TAGS if k in means}
    out |= {f"world_model/{k}": means[k] for k in WM_TAGS if k in means}
    out |= {f"behaviour/{k}": means[k] for k in BEHAVIOUR_TAGS if k in means}
    return out


@torch.no_grad()
def log_images(run: Run, agent: Agent, batch: dict[str, Tensor], recon: Tensor, step: int) -> None:
    """Reconstructions and an open-loop imagined rollout (5 context frames, then the prior)."""
    run.writer.add_images("world_model/reconstruction", reconstruction_grid(batch["obs"], recon), step)
    wm = agent.wm
    ctx = min(5, batch["obs"].shape[1] - 1)
    embed, _, _ = wm.encode(preprocess(batch["obs"][:1, :ctx]), sample=False)
    post, _ = wm.rssm.observe(embed, batch["action"][:1, :ctx], batch["is_first"][:1, :ctx])
    state = {k: v[:, -1] for k, v in post.items()}
    frames = []
    for t in range(ctx, batch["obs"].shape[1]):
        state = wm.rssm.img_step(state, batch["action"][:1, t], sample=False)
        frames.append(wm.decoder(RSSM.feat(state))[0])
    imag = (torch.stack(frames) + 0.5).clamp(0, 1)[:8]
    run.writer.add_images("world_model/imagined", imag.permute(0, 3, 1, 2), step)


def build_agent(
    cfg: DreamerConfig, obs_shape: tuple[int, ...], action_dim: int, resuming: bool
) -> tuple[Agent, BetaVAEEncoder | None]:
    """The agent (and DisWM teacher); pretrained weights are loaded only for a fresh start."""
    weights = load_pretrained(cfg) if cfg.mode in ("distill", "naive") and not resuming else None
    teacher = None
    if cfg.mode == "distill":
        # On resume the teacher's weights come from the checkpoint.
        teacher = BetaVAEEncoder(cfg.z_dim, cfg.cnn_depth) if weights is None else make_teacher(cfg, weights)
        teacher = teacher.to(cfg.device)
    agent = Agent(cfg, obs_shape, action_dim, beta_vae=cfg.mode != "none", teacher=teacher).to(cfg.device)
    if cfg.mode == "naive" and weights is not None:
        naive_init(agent, weights)
    return agent, teacher


@dataclasses.dataclass
class Counters:
    """Loop state that checkpoints keep besides the networks: steps, updates, schedule credits."""

    step: int = 0
    updates: int = 0
    switched: bool = False
    train_credit: int = 0
    skipped: int = 0


def restore(
    checkpoint: dict, agent: Agent, teacher: nn.Module | None, opts: dict[str, torch.optim.Optimizer],
    replay: Replay,
) -> Counters:  # fmt: skip
    """Load every weight, optimizer, RNG state, counter and (if saved) the replay of a checkpoint."""
    st = checkpoint["state"]
    load_weights(agent, st)
    if teacher is not None:
        load_state(teacher, st["teacher"], "teacher")
    for name, opt in opts.items():
        load_state(opt, st["opts"][name], f"{name} optimizer")
    if "replay" in st:
        load_state(replay, st["replay"], "replay buffer")
    set_rng_state(st["rng"])
    step, credit = int(checkpoint["step"]), int(st["train_credit"])
    skipped = int(st.get("skipped_updates", 0))  # absent from checkpoints before the guard
    return Counters(step, int(st["updates"]), bool(st["switched"]), credit, skipped)


def load_weights(agent: Agent, state: dict[str, Any]) -> None:
    """Load a checkpoint's agent weights; a checkpoint of other networks is one user error."""
    try:
        agent.load_state_dict(state["agent"])
    except RuntimeError:
        raise UserError(
            "this checkpoint holds different Dreamer networks (written by an older rlkd, before "
            "`--agent dreamer` became DreamerV2, or with other sizes): train a new run"
        ) from None


def checkpoint_state(
    cfg: DreamerConfig, agent: Agent, teacher: nn.Module | None, opts: dict[str, torch.optim.Optimizer],
    replay: Replay, counters: Counters, obs_shape: tuple[int, ...], bounds: tuple[np.ndarray, np.ndarray],
) -> dict[str, Any]:  # fmt: skip
    """What :func:`restore` and :func:`load_policy` need, as plain data."""
    state: dict[str, Any] = {
        "agent": agent.state_dict(), "opts": {k: o.state_dict() for k, o in opts.items()},
        "rng": rng_state(), "updates": counters.updates, "switched": counters.switched,
        "train_credit": counters.train_credit, "skipped_updates": counters.skipped,
        "meta": model_meta(cfg), "action_dim": len(bounds[0]),
        "obs_shape": list(obs_shape), "beta_vae": cfg.mode != "none",
        "action_low": torch.from_numpy(bounds[0]), "action_high": torch.from_numpy(bounds[1]),
    }  # fmt: skip
    if teacher is not None:
        state["teacher"] = teacher.state_dict()
    if cfg.checkpoint_replay:
        state["replay"] = replay.state_dict()
    return state


def store(
    replay: Replay, info: dict[str, Any], next_obs: np.ndarray, action: np.ndarray, reward: np.ndarray,
    term: np.ndarray, done: np.ndarray,
) -> None:  # fmt: skip
    """Add one vector step to the replay; an ended episode adds its last observation and the next
    episode's first (zero action, ``is_first``), as the same-step autoreset returns both at once."""
    real_next = final_observations(info, next_obs) if done.any() else next_obs
    zero_act = np.zeros(action.shape[1], np.float32)
    for i in range(len(done)):
        replay.add(i, real_next[i], action[i], float(reward[i]), False, bool(term[i] and done[i]))
        if done[i]:
            replay.add(i, next_obs[i], zero_act, 0.0, True, False)


def updates_due(cfg: DreamerConfig, counters: Counters, replay: Replay, prefill_done: bool) -> int:
    """Updates to run after this vector step: ``train_steps`` every ``train_every`` agent steps,
    plus ``prefill_updates`` once when the prefill ends (the official ``pretrain: 100``)."""
    n_updates = 0 if prefill_done else cfg.prefill_updates
    counters.train_credit += cfg.num_envs
    while counters.train_credit >= cfg.train_every:
        counters.train_credit -= cfg.train_every
        n_updates += cfg.train_steps
    # After a resume without the saved replay (or with many envs sharing the prefill), wait until
    # some env has a whole batch_length window instead of failing.
    return n_updates if replay.has_window(cfg.batch_length) else 0


def train(cfg: DreamerConfig, run: Run, checkpoint: dict | None) -> None:
    """Train online; ``checkpoint`` (a payload of this run) resumes from its step.

    On resume every weight, optimizer, counter, RNG state and (with ``checkpoint_replay``) the
    replay buffer are restored; environments restart their episodes.
    """
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    seed_everything(cfg.seed)
    device = cfg.device
    envs, bounds = make_envs(cfg)
    obs_space = envs.single_observation_space
    obs_shape, action_dim = tuple(obs_space.shape), int(bounds[0].shape[0])
    agent, teacher = build_agent(cfg, obs_shape, action_dim, checkpoint is not None)
    opts = build_optimizers(agent, cfg)
    replay = Replay(cfg.num_envs, cfg.replay_capacity, obs_shape, obs_space.dtype, action_dim, cfg.seed)
    n = restore(checkpoint, agent, teacher, opts, replay) if checkpoint is not None else Counters()
    guard = UpdateGuard(cfg.on_nonfinite)
    guard.skipped = n.skipped
    # Official code (models.py, WorldModel.__init__): `self._step = step` copies an int once, so
    # the eta formula always sees the step at which the model was built (after prefill): eta is
    # frozen at its initial value. `official_frozen_eta` reproduces that.
    frozen_eta = eta_schedule(cfg, max(n.step, cfg.prefill))
    if n.switched:
        set_color_set(envs, cfg.color_switch_to)

    obs, _ = envs.reset(seed=cfg.seed + n.step)
    check_finite(f"env {cfg.env_id}", n.step, observation=obs)
    envs.action_space.seed(cfg.seed + n.step)
    first = np.ones(cfg.num_envs, bool)
    for i in range(cfg.num_envs):
        replay.add(i, obs[i], np.zeros(action_dim, np.float32), 0.0, True, False)
    latent = agent.wm.rssm.initial(cfg.num_envs, device)
    prev_action = torch.zeros(cfg.num_envs, action_dim, device=device)
    run.start()

    progress = Progress(cfg.total_steps, n.step, label(cfg))
    last_log = last_img = last_ckpt = n.step
    t0, s0 = time.time(), n.step
    episodes: dict[str, list[float]] = {"return": [], "length": [], "success": []}
    scalars = Scalars()
    prefill_done = n.step >= cfg.prefill
    while n.step < cfg.total_steps:
        # ---- act (the latent follows the observations during prefill too, so the first policy
        # step after it starts from a filtered state, not from zeros mid-episode)
        with torch.no_grad():
            obs_t, first_t = torch.as_tensor(obs, device=device), torch.as_tensor(first, device=device)
            latent, act_t = agent.policy_step(latent, prev_action, obs_t, first_t, deterministic=False)
        if n.step < cfg.prefill:
            action = np.random.uniform(-1.0, 1.0, (cfg.num_envs, action_dim)).astype(np.float32)
        else:
            action = act_t.cpu().numpy().astype(np.float32)
            check_finite("the policy", n.step, DIVERGED, action=action)
        next_obs, reward, term, trunc, info = envs.step(to_env_action(action, *bounds))
        check_finite(f"env {cfg.env_id}", n.step + cfg.num_envs, observation=next_obs, reward=reward)
        done = np.logical_or(term, trunc)
        store(replay, info, next_obs, action, reward, term, done)
        record_episodes(info, episodes)
        prev_action = torch.as_tensor(action, device=device) * torch.as_tensor(~done, device=device)[:, None]
        obs, first = next_obs, done
        n.step += cfg.num_envs

        # ---- colour-distractor switch at half of training (official dreamer.py main loop)
        if cfg.color_switch and not n.switched and n.step >= cfg.total_steps // 2:
            set_color_set(envs, cfg.color_switch_to)
            n.switched = True
            run.log_scalars(n.step, {"charts/color_switch": 1.0})

        # ---- learn
        eta = frozen_eta if cfg.official_frozen_eta else eta_schedule(cfg, n.step)
        if n.step >= cfg.prefill:
            n_updates = updates_due(cfg, n, replay, prefill_done)
            prefill_done = True
            guard.step = n.step
            for _ in range(n_updates):
                batch = to_torch(replay.sample(cfg.batch_size, cfg.batch_length), device)
                losses, metrics = update(agent, opts, batch, eta, guard)
                scalars.add({**losses, **metrics})
                n.updates += 1
            if (cfg.image_log_interval and n_updates and n.step - last_img >= cfg.image_log_interval
                    and batch["obs"].dtype == torch.uint8):  # fmt: skip
                last_img = n.step
                log_images(run, agent, batch, metrics["recon"], n.step)

        # ---- log and checkpoint
        if n.step - last_log >= cfg.log_interval or n.step >= cfg.total_steps:
            last_log = n.step
            sps = (n.step - s0) / max(time.time() - t0, 1e-9)
            logged: dict[str, float | Tensor] = {"charts/SPS": sps, "world_model/eta": eta,
                                                 "charts/updates": n.updates}  # fmt: skip
            logged |= episode_means(episodes) | (tagged(scalars.pop()) if scalars.count else {})
            if guard.mode == "skip":
                logged["charts/skipped_updates"] = guard.skipped
            run.log_scalars(n.step, logged)
            progress.update(n.step, SPS=sps, ret=logged.get("charts/episodic_return"))
        if n.step - last_ckpt >= cfg.checkpoint_interval or n.step >= cfg.total_steps:
            last_ckpt = n.step
            n.skipped = guard.skipped
            state = checkpoint_state(cfg, agent, teacher, opts, replay, n, obs_shape, bounds)
            run.save_checkpoint(n.step, state, keep=cfg.keep_checkpoints)
    progress.close()
    envs.close()
    run.close()


def record_episodes(info: dict[str, Any], episodes: dict[str, list[float]]) -> None:
    """Append the return, length and (if reported) success of every episode that ended this step."""
    if "episode" not in info:
        return
    ended = np.flatnonzero(info["_episode"])
    ep = info["episode"]
    episodes["return"].extend(ep["r"][ended].astype(float).tolist())
    episodes["length"].extend(ep["l"][ended].astype(float).tolist())
    if "success" in ep:
        episodes["success"].extend(ep["success"][ended].astype(float).tolist())


def episode_means(episodes: dict[str, list[float]]) -> dict[str, float]:
    """charts/ means of the episodes since the last call (which it clears)."""
    tags = {"return": "charts/episodic_return", "length": "charts/episodic_length",
            "success": "charts/success_rate"}  # fmt: skip
    out = {tags[k]: float(np.mean(v)) for k, v in episodes.items() if v}
    for v in episodes.values():
        v.clear()
    return out


# ============================================================================ policy for eval / collect


class Policy:
    """Acts with a trained agent, keeping one RSSM latent per environment; returns env-scaled actions."""

    def __init__(self, agent: Agent, device: str, low: np.ndarray, high: np.ndarray) -> None:
        self.agent, self.device, self.low, self.high = agent.eval(), device, low, high
        self.latent: State | None = None
        self.prev_action: Tensor | None = None

    @torch.no_grad()
    def act(self, obs: np.ndarray, first: np.ndarray, deterministic: bool) -> np.ndarray:
        """obs (N, *obs_shape), first bool (N,) -> actions float32 (N, A) in the env's bounds."""
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
        return to_env_action(action.cpu().numpy().astype(np.float32), self.low, self.high)


def load_policy(run: Run, checkpoint: dict, device: str) -> Policy:
    """Rebuild the agent of ``run`` from ``checkpoint`` (a payload of that run)."""
    from rlkd.config import from_dict

    # Acting needs the model's fields only: training options this version no longer has (renamed
    # flags of older runs) and the teacher's folder are left out.
    known = {f.name for f in dataclasses.fields(DreamerConfig)} - {"pretrained"}
    saved = {k: v for k, v in checkpoint["config"].items() if k in known}
    cfg = from_dict(DreamerConfig, saved | {"finetune": "none", "device": device}, f"{run.path}/config.yaml")
    state = checkpoint["state"]
    obs_shape = tuple(state.get("obs_shape", (64, 64, 3)))
    agent = Agent(cfg, obs_shape, int(state["action_dim"]), beta_vae=bool(state.get("beta_vae", True)))
    load_weights(agent, state)
    action_dim = int(state["action_dim"])
    low = state["action_low"].numpy() if "action_low" in state else -np.ones(action_dim, np.float32)
    high = state["action_high"].numpy() if "action_high" in state else np.ones(action_dim, np.float32)
    return Policy(agent.to(device), device, low, high)


__all__ = [
    "CONFIG", "PRESETS", "Agent", "DreamerConfig", "Policy", "eta_schedule", "label", "load_policy",
    "train", "update",
]  # fmt: skip
