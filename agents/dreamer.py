"""Online Dreamer (DreamerV2, continuous control) and DisWM (Wang et al., ICCV 2025) in one file.

Read top to bottom: config and presets, the agent (world model in ``rlkd.world_model.model``,
behaviour in ``rlkd.world_model.behaviour``), the update (world model, then imagined actor-critic
with lambda-returns and a slow critic target), the environment checks, the training loop (replay in
``rlkd.world_model.replay``), and the policy used by ``rlkd eval``/``rlkd collect``.

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
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from rlkd.agents import Inspection
from rlkd.envs.color_switch import ColourSwitch, check_color_switch
from rlkd.envs.wrappers import final_observations
from torch import Tensor, nn

from rlkd import envs as rlkd_envs
from rlkd.core import loop
from rlkd.core.config import check_ranges, read_presets, to_dict
from rlkd.core.guard import DIVERGED, UpdateGuard, check_finite
from rlkd.core.media import VideoRecorder
from rlkd.core.run import Run, load_state, seed_everything
from rlkd.errors import UserError, describe_space
from rlkd.nn.nets import numpy32
from rlkd.nn.optim import FusedAdam, clip_grad_norm_
from rlkd.world_model.behaviour import Behaviour
from rlkd.world_model.codecs import BetaVAEEncoder, preprocess
from rlkd.world_model.model import (
    Distillation,
    WorldModel,
    WorldModelConfig,
    model_meta,
    obs_kind,
    reconstruction_grid,
    to_torch,
)
from rlkd.world_model.replay import Replay
from rlkd.world_model.rssm import RSSM, State
from rlkd.world_model.transfer import load_pretrained, make_teacher, naive_init

LOSS_SCALES = {"image": 1.0, "reward": 2.0, "kl": 1.0, "continue": 1.0, "distill": 1.0, "actor": 1.0,
               "critic": 1.0}  # fmt: skip
"""Every loss of the update with its default weight, in logging order: the one list of their names."""


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
    distill_window: int = 0
    """Scale the batchmean distillation KL, a sum over the window's T steps, by distill_window / T, so
    it weighs as much against the per-step world-model losses as the official sum over its windows
    of 50 (50: the official strength at any batch_length; 0: no scaling)."""
    official_frozen_eta: bool = False
    """Reproduce the official eta, frozen at its value at the step the world model was built."""
    official_teacher_drift: bool = False
    """Reproduce the official teacher, trained by the distillation gradient (and in the optimizer)."""
    official_reversed_returns: bool = False
    """Reproduce the official code's time-reversed lambda-returns (step t learns from R_{H-2-t})."""
    official_unclipped_actions: bool = False
    """Reproduce the official actor's samples, never clipped to [-1, 1] (replay and imagination)."""
    official_window_start: bool = False
    """Reproduce the official first step of a replayed window: zero state but the stored action (rlkd:
    the window starts as an episode, zero state and zero action)."""
    replay_finished_only: bool = False
    """Replay finished episodes only, as the official code (rlkd also samples the running episode)."""
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
    loss_scales: dict[str, float] = dataclasses.field(default_factory=lambda: dict(LOSS_SCALES))
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
                          "actor_entropy", "image_log_interval", "distill_window"),
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
        if self.distill_window and self.distill_reduction != "batchmean":
            raise UserError("--distill-window scales the batchmean sum over time: use it with "
                            "--distill-reduction batchmean")
        unknown = set(self.loss_scales) - set(LOSS_SCALES)
        if unknown:
            raise UserError(f"--loss-scales has unknown keys {sorted(unknown)}")


CONFIG = DreamerConfig
DISTRIBUTED = False

PRESETS = read_presets(Path(__file__).with_name("presets") / "dreamer.yaml")
"""Named field overrides (``--preset``), in ``agents/presets/dreamer.yaml`` with where each comes from."""
"""Same presets for ``--agent diswm``; the mode comes from ``agent`` through ``finetune: auto``."""


def finalize(cfg: DreamerConfig) -> DreamerConfig:
    """Nothing is derived from Dreamer's inputs."""
    return cfg


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
    # eta_init * max(1 - progress, eta_final / eta_init), written so that eta_init = 0 (the
    # no-distillation control) needs no division.
    return max(cfg.eta_init * (1.0 - progress), cfg.eta_final)


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
            cfg.lambda_, cfg.actor_entropy, cfg.slow_target_update, cfg.official_reversed_returns,
            not cfg.official_unclipped_actions,
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

        The posterior, and DisWM's beta-VAE latent z, are sampled even when ``deterministic`` (the
        official ``collect_dyn_sample``; its ``BetaVAE_H_Encoder`` always reparameterises): only the
        action is the actor's mode then.
        """
        embed, _, _ = self.wm.encode(preprocess(obs), sample=True)
        state = self.wm.rssm.obs_step(state, prev_action, embed, first)
        action, _, _ = self.behaviour.actor.sample(RSSM.feat(state), deterministic)
        return state, action


def build_optimizers(agent: Agent, cfg: DreamerConfig) -> dict[str, FusedAdam]:
    """Adam for model, actor and critic (eps 1e-5, dreamer-torch)."""
    model_params = list(agent.wm.parameters())
    if cfg.official_teacher_drift and agent.teacher is not None:
        # Official code (models.py, WorldModel.__init__): the teacher `encoder_distillation` is a
        # submodule, so `self.parameters()` hands its weights to the model optimizer.
        model_params += list(agent.teacher.parameters())
    beh = agent.behaviour
    return {
        "model": FusedAdam(model_params, lr=cfg.model_lr, eps=1e-5),
        "actor": FusedAdam(beh.actor.parameters(), lr=cfg.actor_lr, eps=1e-5),
        "critic": FusedAdam(beh.critic.parameters(), lr=cfg.critic_lr, eps=1e-5),
    }


def clip_step(
    opt: FusedAdam, losses: dict[str, Tensor], params: list[Tensor], clip: float,
    guard: UpdateGuard | None, name: str,
) -> Tensor:  # fmt: skip
    """Backward the sum of ``losses`` into ``params`` only, clip, and step unless ``guard`` finds a
    NaN/inf loss or gradient. Returns the grad norm before clipping."""
    opt.zero_grad()
    sum(losses.values()).backward(inputs=params)
    norm = clip_grad_norm_(params, clip)
    if guard is None or guard.ok(losses, {name: norm}):
        opt.step()
    return norm


def update(
    agent: Agent, opts: dict[str, FusedAdam], batch: dict[str, Tensor], eta: float,
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
        # distill_window: the summed KL of a T-step window scaled to the official window's length.
        window = cfg.distill_window / batch["reward"].shape[1] if cfg.distill_window else 1.0
        weighted["distill"] = weighted["distill"] * (eta * window)
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


def env_kwargs_for(cfg: DreamerConfig) -> dict[str, Any]:
    """``make_vec`` keywords of the run: ``env_kwargs``, the DMC action repeat, and the frame size
    when it is not the renderers' 64 (``make_vec`` resizes the frames)."""
    kwargs = dict(cfg.env_kwargs)
    if cfg.env_id.startswith("rlkd/DMC-"):
        kwargs.setdefault("action_repeat", cfg.action_repeat)
    if cfg.image_size != 64:
        kwargs.setdefault("image_size", cfg.image_size)
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
        side = envs.single_observation_space.shape[0]
        if kind == "image" and side != cfg.image_size:
            raise UserError(f"{cfg.env_id} renders {side}x{side} frames: pass --image-size {side}")
        bounds = action_bounds(envs.single_action_space, cfg.env_id)
        if cfg.color_switch:
            check_color_switch(envs)
    except UserError:
        envs.close()
        raise
    return envs, bounds


# ============================================================================ training


WM_TAGS = ("image_nll", "vae_kl", "kl_value", "reward_mse", "reward_var", "grad_norm_model")
BEHAVIOUR_TAGS = ("actor_entropy", "action_std", "imag_reward", "imag_return", "imag_value", "critic_target",
                  "grad_norm_actor", "grad_norm_critic")  # fmt: skip


def tagged(means: Mapping[str, Any]) -> dict[str, Any]:
    """Update values under their TensorBoard tags: losses/, world_model/, behaviour/."""
    out = {f"losses/{k}": means[k] for k in LOSS_SCALES if k in means}
    out |= {f"world_model/{k}": means[k] for k in WM_TAGS if k in means}
    out |= {f"behaviour/{k}": means[k] for k in BEHAVIOUR_TAGS if k in means}
    return out


@torch.no_grad()
def images(agent: Agent, batch: dict[str, Tensor], recon: Tensor) -> dict[str, Tensor]:
    """Reconstructions and an open-loop imagined rollout (5 context frames, then the prior), NCHW."""
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
    return {
        "world_model/reconstruction": reconstruction_grid(batch["obs"], recon),
        "world_model/imagined": imag.permute(0, 3, 1, 2),
    }


def build_agent(
    cfg: DreamerConfig, obs_shape: tuple[int, ...], action_dim: int, resuming: bool
) -> tuple[Agent, BetaVAEEncoder | None]:
    """The agent (and DisWM teacher); pretrained weights are loaded only for a fresh start."""
    weights = load_pretrained(cfg) if cfg.mode in ("distill", "naive") and not resuming else None
    teacher = None
    if cfg.mode == "distill":
        # On resume the teacher's weights come from the checkpoint.
        if weights is None:
            teacher = BetaVAEEncoder(cfg.z_dim, cfg.cnn_depth, cfg.image_size).to(cfg.device)
        else:
            teacher = make_teacher(cfg, weights)
    agent = Agent(cfg, obs_shape, action_dim, beta_vae=cfg.mode != "none", teacher=teacher).to(cfg.device)
    if cfg.mode == "naive" and weights is not None:
        naive_init(agent.wm, weights)
    return agent, teacher


def load_weights(agent: Agent, state: Mapping[str, Any]) -> None:
    """Load a checkpoint's agent weights; a checkpoint of other networks is one user error."""
    try:
        agent.load_state_dict(state["agent"])
    except RuntimeError:
        raise UserError(
            "this checkpoint holds different Dreamer networks (written by an older rlkd, before "
            "`--agent dreamer` became DreamerV2, or with other sizes): train a new run"
        ) from None


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


def train(cfg: DreamerConfig, run: Run, checkpoint: dict | None) -> None:
    """Train online with the shared loop; ``checkpoint`` (a payload of this run) resumes from its step.

    On resume every weight, optimizer, counter, RNG state and (with ``checkpoint_replay``) the
    replay buffer are restored; environments restart their episodes.
    """
    if cfg.torch_threads:
        torch.set_num_threads(cfg.torch_threads)
    seed_everything(cfg.seed)
    envs, bounds = make_envs(cfg)
    try:
        algo = Dreamer(cfg, envs.single_observation_space, bounds, resuming=checkpoint is not None)
    except BaseException:
        envs.close()
        raise
    callbacks: list[Any] = []
    if cfg.color_switch:  # at half of training, as the official dreamer.py main loop
        callbacks.append(ColourSwitch(cfg.color_switch_to, cfg.total_steps // 2))
    if cfg.capture_video:
        callbacks.append(VideoRecorder(to_dict(cfg), env_kwargs_for(cfg), algo, cfg.capture_video))
    loop.train(cfg, run, checkpoint, envs, algo, callbacks)


class Dreamer:
    """Dreamer/DisWM as the shared loop drives it: act through the RSSM, replay every step, and run
    ``train_steps`` world-model + behaviour updates every ``train_every`` env steps after the prefill.

    Args:
        cfg: Resolved config.
        obs_space: One env's observation space.
        bounds: The env's action bounds (low, high), each (A,).
        resuming: Whether a checkpoint will be loaded (then pretrained weights are not read).
    """

    def __init__(
        self, cfg: DreamerConfig, obs_space: gym.Space, bounds: tuple[np.ndarray, np.ndarray], resuming: bool
    ) -> None:
        self.cfg, self.bounds, self.label = cfg, bounds, label(cfg)
        self.obs_shape, self.action_dim = tuple(obs_space.shape), int(bounds[0].shape[0])
        self.agent, self.teacher = build_agent(cfg, self.obs_shape, self.action_dim, resuming)
        self.opts = build_optimizers(self.agent, cfg)
        self.replay = Replay(
            cfg.num_envs, cfg.replay_capacity, self.obs_shape, obs_space.dtype, self.action_dim, cfg.seed,
            cfg.replay_finished_only, cfg.official_sampler,
        )
        self.step = self.updates = self.train_credit = self.last_img = 0
        self.prefill_done = False
        self.recent: tuple[dict[str, Tensor], Tensor] | None = None  # last batch and reconstruction
        self.action = np.zeros((cfg.num_envs, self.action_dim), np.float32)

    def start(
        self, envs: Any, obs: np.ndarray, step: int, resumed: bool, note: Callable[[str], None]
    ) -> np.ndarray:
        cfg, device = self.cfg, self.cfg.device
        if step < cfg.prefill:
            note(f"prefill: random actions until step {cfg.prefill}, then {cfg.prefill_updates} updates")
        self.step = self.last_img = step
        self.prefill_done = step >= cfg.prefill
        for i in range(cfg.num_envs):
            self.replay.add(i, obs[i], np.zeros(self.action_dim, np.float32), 0.0, True, False)
        self.latent = self.agent.wm.rssm.initial(cfg.num_envs, device)
        self.prev_action = torch.zeros(cfg.num_envs, self.action_dim, device=device)
        self.first = np.ones(cfg.num_envs, bool)
        return obs

    def act(self, obs: np.ndarray, step: int) -> np.ndarray:
        # The latent follows the observations during prefill too, so the first policy step after it
        # starts from a filtered state, not from zeros mid-episode.
        cfg, device = self.cfg, self.cfg.device
        with torch.no_grad():
            obs_t, first_t = torch.as_tensor(obs, device=device), torch.as_tensor(self.first, device=device)
            self.latent, act_t = self.agent.policy_step(self.latent, self.prev_action, obs_t, first_t, False)
        if step < cfg.prefill:
            self.action = np.random.uniform(-1.0, 1.0, (cfg.num_envs, self.action_dim)).astype(np.float32)
        else:
            self.action = act_t.cpu().numpy().astype(np.float32)
            check_finite("the policy", step, DIVERGED, action=self.action)
        return to_env_action(self.action, *self.bounds)

    def observe(self, tr: loop.Transition, step: int) -> None:
        done = np.logical_or(tr.terminated, tr.truncated)
        store(self.replay, tr.info, tr.next_obs, self.action, tr.reward, tr.terminated, done)
        keep = torch.as_tensor(~done, device=self.cfg.device)[:, None]
        self.prev_action = torch.as_tensor(self.action, device=self.cfg.device) * keep
        self.first, self.step = done, step

    def eta(self) -> float:
        # Official code (models.py, WorldModel.__init__): `self._step = step` copies an int once, so
        # the eta formula always sees the step at which the model was built (after prefill): eta is
        # frozen at its initial value. `official_frozen_eta` reproduces that. Every run starts at
        # step 0, so the value is derived, not kept: a resume gets the same eta.
        step = self.cfg.prefill if self.cfg.official_frozen_eta else self.step
        return eta_schedule(self.cfg, step)

    def updates_due(self) -> int:
        """Updates to run after this vector step: ``train_steps`` every ``train_every`` agent steps,
        plus ``prefill_updates`` once when the prefill ends (the official ``pretrain: 100``)."""
        cfg = self.cfg
        n_updates = 0 if self.prefill_done else cfg.prefill_updates
        self.prefill_done = True
        self.train_credit += cfg.num_envs
        while self.train_credit >= cfg.train_every:
            self.train_credit -= cfg.train_every
            n_updates += cfg.train_steps
        # After a resume without the saved replay (or with many envs sharing the prefill), wait until
        # some env has a whole batch_length window instead of failing.
        return n_updates if self.replay.has_window(cfg.batch_length) else 0

    def update(self, step: int, guard: UpdateGuard) -> dict[str, Tensor]:
        cfg = self.cfg
        if step < cfg.prefill:
            return {}
        n_updates, sums = self.updates_due(), {}
        for _ in range(n_updates):
            window = self.replay.sample(cfg.batch_size, cfg.batch_length, not cfg.official_window_start)
            batch = to_torch(window, cfg.device)
            losses, metrics = update(self.agent, self.opts, batch, self.eta(), guard)
            for k, v in tagged({**losses, **metrics}).items():
                sums[k] = sums[k] + v if k in sums else v
            self.updates += 1
            self.recent = (batch, metrics["recon"])
        return {k: v / n_updates for k, v in sums.items()}  # tensors: no device sync per update

    def at_boundary(self) -> bool:
        return True

    def policy(self) -> Policy:
        return Policy(self.agent, self.cfg.device, *self.bounds)

    def status(self) -> dict[str, float]:
        return {"world_model/eta": self.eta(), "charts/updates": self.updates}

    def media(self, step: int) -> dict[str, Tensor]:
        """Images after an update every ``image_log_interval`` steps, for pixel observations."""
        if not (self.cfg.image_log_interval and self.recent is not None):
            return {}
        batch, recon = self.recent
        self.recent = None
        if step - self.last_img < self.cfg.image_log_interval or batch["obs"].dtype != torch.uint8:
            return {}
        self.last_img = step
        return images(self.agent, batch, recon)

    def state_dict(self) -> dict[str, Any]:
        """What :meth:`load_state_dict` and :func:`load_policy` need, as plain data."""
        cfg, (low, high) = self.cfg, self.bounds
        state: dict[str, Any] = {
            "agent": self.agent.state_dict(), "opts": {k: o.state_dict() for k, o in self.opts.items()},
            "updates": self.updates, "train_credit": self.train_credit, "meta": model_meta(cfg),
            "action_dim": self.action_dim, "obs_shape": list(self.obs_shape), "beta_vae": cfg.mode != "none",
            "action_low": torch.from_numpy(low), "action_high": torch.from_numpy(high),
        }  # fmt: skip
        if self.teacher is not None:
            state["teacher"] = self.teacher.state_dict()
        if cfg.checkpoint_replay:
            state["replay"] = self.replay.state_dict()
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Load every weight, optimizer, counter and (if saved) the replay of a checkpoint."""
        load_weights(self.agent, state)
        if self.teacher is not None:
            load_state(self.teacher, state["teacher"], "teacher")
        for name, opt in self.opts.items():
            load_state(opt, state["opts"][name], f"{name} optimizer")
        if "replay" in state:
            load_state(self.replay, state["replay"], "replay buffer")
        self.updates, self.train_credit = int(state["updates"]), int(state["train_credit"])


# ============================================================================ policy for eval / collect


class Policy:
    """Acts with a trained agent, keeping one RSSM latent per environment; returns env-scaled actions."""

    def __init__(self, agent: Agent, device: str, low: np.ndarray, high: np.ndarray) -> None:
        self.agent, self.device, self.low, self.high = agent, device, low, high
        self.obs_shape = tuple(agent.wm.obs_shape)
        self.latent: State | None = None
        self.prev_action: Tensor | None = None

    @torch.no_grad()
    def act(self, obs: np.ndarray, first: np.ndarray, deterministic: bool) -> np.ndarray:
        """obs (N, *obs_shape), first bool (N,) -> actions float32 (N, A) in the env's bounds."""
        return to_env_action(self._step(obs, first, deterministic).cpu().numpy(), self.low, self.high)

    @torch.no_grad()
    def inspect(self, obs: np.ndarray, first: np.ndarray, deterministic: bool) -> Inspection:
        """:meth:`act` with the model state the actor read (deter + stoch), the actor's mean std, the
        critic's value and the actor's mean."""
        action = self._step(obs, first, deterministic)
        feat = RSSM.feat(self.latent)
        mean, std = self.agent.behaviour.actor(feat)
        value = self.agent.behaviour.critic(feat).squeeze(-1)
        return Inspection(
            to_env_action(action.cpu().numpy(), self.low, self.high), numpy32(feat),
            numpy32(std.mean(-1)), numpy32(value), numpy32(mean),
        )  # fmt: skip

    def _step(self, obs: np.ndarray, first: np.ndarray, deterministic: bool) -> Tensor:
        """Advance each env's latent by one observation; the action (N, A) in [-1, 1]."""
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
        return action.float()


def load_policy(run: Run, checkpoint: dict, device: str) -> Policy:
    """Rebuild the agent of ``run`` from ``checkpoint`` (a payload of that run)."""
    from rlkd.core.config import from_dict

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
    return Policy(agent.to(device).eval(), device, low, high)


__all__ = [
    "CONFIG", "PRESETS", "Agent", "DreamerConfig", "Policy", "eta_schedule", "label", "load_policy",
    "train", "update",
]  # fmt: skip
