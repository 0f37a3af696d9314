"""Proximal Policy Optimization with optional intrinsic rewards (RND, RDD), readable top to bottom.

The loop follows CleanRL's ``ppo.py``/``ppo_atari_envpool.py``/``ppo_rnd_envpool.py`` and the
implementation details listed by Huang et al. (2022, "The 37 Implementation Details of PPO"):
orthogonal init, LR annealing, GAE, minibatch advantage normalization, clipped policy and value
losses, global gradient clipping. On top of that:

* **Truncation bootstrapping.** Envs autoreset in the same step (rlkd's vector contract); a
  truncated step adds ``gamma * V(final_obs)`` to its TD target instead of treating the time
  limit as a terminal state (Pardo et al. 2018).
* **Intrinsic rewards** (Burda et al. 2018, section 2.3): a second value head for the intrinsic
  return, which is *non-episodic* (no episode cut, its own ``gamma_int``); rewards are mixed as
  advantages ``ext_coef * A_ext + int_coef * A_int`` before the policy loss. The bonus is computed
  after each rollout on the observation each step led to (at an episode end, the next episode's
  first one, where the non-episodic stream continues; as the RND reference code), scaled by the
  running std of the discounted intrinsic return, and the predictor trains in the same
  minibatches and optimizer as the policy.

Shapes: ``T`` = ``num_steps``, ``N`` = ``num_envs``, ``B = T*N``.
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from rlkd.envs import make_vec
from rlkd.envs.wrappers import final_observations
from torch import Tensor, nn
from torch.distributions import Categorical, Normal

from rlkd.config import TrainConfig, check_ranges
from rlkd.errors import UserError, describe_space
from rlkd.guard import DIVERGED, UpdateGuard, check_finite
from rlkd.intrinsic import INTRINSIC_NAMES, IntrinsicModule, make_intrinsic
from rlkd.nets import channels_last, image_chw, is_image, layer_init, mlp, nature_cnn
from rlkd.returns import gae
from rlkd.run import Progress, Run, load_state, rng_state, seed_everything, set_rng_state
from rlkd.stats import DiscountedReturnScaler, RunningMeanStd


@dataclasses.dataclass
class PPOConfig(TrainConfig):
    """PPO (+ RND/RDD). Defaults are the built-in job: PPO+RND on the sparse AGV warehouse."""

    intrinsic: str = "rnd"
    """Intrinsic-reward module: none, rnd or rdd."""
    num_steps: int = 128
    """Steps per environment in each rollout."""
    learning_rate: float = 3e-4
    """Adam learning rate (of the policy, value heads and intrinsic predictor)."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to 0 over training."""
    gamma: float = 0.999
    """Discount of the extrinsic return."""
    gae_lambda: float = 0.95
    """GAE lambda (both returns)."""
    num_minibatches: int = 4
    """Minibatches per epoch."""
    update_epochs: int = 4
    """Epochs over each rollout."""
    norm_adv: bool = True
    """Normalize advantages within each minibatch."""
    clip_coef: float = 0.2
    """PPO surrogate clipping coefficient."""
    clip_vloss: bool = True
    """Clip the value loss around the old values, as the PPO reference code does."""
    ent_coef: float = 0.01
    """Entropy bonus coefficient."""
    vf_coef: float = 0.5
    """Value loss coefficient."""
    max_grad_norm: float = 0.5
    """Global gradient-norm clip."""
    target_kl: float = 0.0
    """Stop the epoch loop early when the approximate KL exceeds this; 0 disables."""
    hidden_size: int = 64
    """Width of the two hidden layers of the MLP actor and critic (vector observations)."""
    norm_obs: bool = False
    """Normalize vector observations by running mean/std (clipped to [-10, 10]) as VecNormalize."""
    norm_reward: bool = False
    """Scale extrinsic rewards by the running std of the discounted return (VecNormalize)."""
    ext_coef: float = 2.0
    """Weight of the extrinsic advantage when an intrinsic module is on (RND paper: 2)."""
    int_coef: float = 1.0
    """Weight of the intrinsic advantage (RND paper: 1)."""
    gamma_int: float = 0.99
    """Discount of the non-episodic intrinsic return (RND paper: 0.99)."""
    int_update_proportion: float = 0.25
    """Fraction of each minibatch the intrinsic predictor trains on (RND paper: 0.25)."""
    int_output_dim: int = 0
    """Intrinsic target/predictor output size; 0: module default (RND 128, RDD 64 vectors; 512 pixels)."""
    rdd_sigma: float = 0.0
    """Std of RDD's target distribution; 0 picks the paper's default."""
    int_init_steps: int = 4_096
    """Random-agent env steps used to initialise the intrinsic module's observation statistics."""

    def validate(self) -> None:
        super().validate()
        if self.intrinsic not in INTRINSIC_NAMES:
            raise UserError(
                f"--intrinsic must be one of {', '.join(INTRINSIC_NAMES)}, got {self.intrinsic!r}"
            )
        check_ranges(
            self,
            positive=("num_steps", "num_minibatches", "update_epochs", "hidden_size", "learning_rate",
                      "clip_coef", "max_grad_norm"),
            non_negative=("ent_coef", "vf_coef", "target_kl", "ext_coef", "int_coef", "int_output_dim",
                          "rdd_sigma", "int_init_steps"),
            unit=("gamma", "gae_lambda", "gamma_int"),
        )  # fmt: skip
        if (self.num_envs * self.num_steps) % self.num_minibatches:
            raise UserError(
                f"num_envs*num_steps ({self.num_envs * self.num_steps}) must be divisible by "
                f"num_minibatches ({self.num_minibatches})"
            )
        if not 0.0 < self.int_update_proportion <= 1.0:
            raise UserError(f"--int-update-proportion must be in (0, 1], got {self.int_update_proportion}")


CONFIG = PPOConfig

PRESETS: dict[str, dict[str, Any]] = {
    # Tiny and fast: what the tests run.
    "debug": {
        "env_id": "CartPole-v1",
        "intrinsic": "none",
        "num_envs": 4,
        "num_steps": 32,
        "total_steps": 512,
        "num_minibatches": 2,
        "update_epochs": 2,
        "hidden_size": 16,
        "gamma": 0.99,
        "checkpoint_interval": 256,
        "log_interval": 128,
        "int_init_steps": 64,
    },
    # CleanRL ppo.py settings for classic control.
    "classic": {
        "env_id": "CartPole-v1",
        "intrinsic": "none",
        "num_envs": 8,
        "num_steps": 128,
        "total_steps": 500_000,
        "learning_rate": 2.5e-4,
        "gamma": 0.99,
        "ent_coef": 0.01,
        "hidden_size": 64,
    },
    # RND paper / CleanRL ppo_rnd_envpool.py settings for Atari (sticky actions, no episodic life).
    "atari": {
        "env_id": "MontezumaRevenge-v5",
        "intrinsic": "rnd",
        "num_envs": 16,
        "num_steps": 128,
        "total_steps": 10_000_000,
        "learning_rate": 1e-4,
        "gamma": 0.999,
        "gamma_int": 0.99,
        "ent_coef": 0.001,
        "update_epochs": 4,
        "num_minibatches": 4,
        "clip_vloss": False,
        "int_init_steps": 50 * 128 * 16,
        "checkpoint_interval": 500_000,
        "env_kwargs": {
            "episodic_life": False,
            "reward_clip": True,
            "repeat_action_probability": 0.25,
            "max_episode_steps": 18_000,
        },
    },
    # CleanRL ppo_continuous_action.py settings for MuJoCo.
    "mujoco": {
        "env_id": "HalfCheetah-v5",
        "intrinsic": "none",
        "num_envs": 8,
        "num_steps": 256,
        "total_steps": 1_000_000,
        "learning_rate": 3e-4,
        "gamma": 0.99,
        "ent_coef": 0.0,
        "update_epochs": 10,
        "num_minibatches": 32,
        "norm_obs": True,
        "norm_reward": True,
        "hidden_size": 64,
    },
}


# ------------------------------------------------------------------------------------------ network
class Agent(nn.Module):
    """Actor with one or two value heads.

    Vector observations: separate tanh MLPs for actor and critic (CleanRL). Images: the Nature CNN
    trunk shared by actor and critics, inputs scaled from uint8 to [0, 1].
    Discrete actions: categorical logits. Box actions: Gaussian with state-independent log-std.
    """

    def __init__(
        self, obs_space: gym.spaces.Box, action_space: gym.Space, hidden: int, int_head: bool
    ) -> None:
        super().__init__()
        shape = tuple(obs_space.shape)
        if is_image(shape):
            c, h, w = image_chw(shape)
            cnn, size = nature_cnn(c, (h, w))
            self.trunk: nn.Module = nn.Sequential(cnn, layer_init(nn.Linear(size, 512)), nn.ReLU())
            self.actor_body: nn.Module = nn.Identity()
            self.critic_body: nn.Module = nn.Identity()
            features = 512
        else:
            dim = int(np.prod(shape))
            self.trunk = nn.Flatten()
            self.actor_body = nn.Sequential(mlp([dim, hidden, hidden]), nn.Tanh())
            self.critic_body = nn.Sequential(mlp([dim, hidden, hidden]), nn.Tanh())
            features = hidden
        self.image = is_image(shape)
        self.channels_last = self.image and channels_last(shape)
        self.discrete = isinstance(action_space, gym.spaces.Discrete)
        if self.discrete:
            self.actor = layer_init(nn.Linear(features, int(action_space.n)), std=0.01)
        else:
            act_dim = int(np.prod(action_space.shape))
            self.actor = layer_init(nn.Linear(features, act_dim), std=0.01)
            self.actor_logstd = nn.Parameter(torch.zeros(1, act_dim))
        self.critic_ext = layer_init(nn.Linear(features, 1), std=1.0)
        self.critic_int = layer_init(nn.Linear(features, 1), std=1.0) if int_head else None

    def _features(self, x: Tensor) -> Tensor:
        if self.image:
            x = (x.permute(0, 3, 1, 2) if self.channels_last else x).float().mul_(1.0 / 255.0)
        return self.trunk(x)

    def values(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, *obs)`` -> extrinsic and intrinsic values ``(B,)`` (intrinsic zeros without a head)."""
        h = self.critic_body(self._features(x))
        v_int = (
            self.critic_int(h).squeeze(-1)
            if self.critic_int is not None
            else torch.zeros(h.shape[0], device=h.device)
        )
        return self.critic_ext(h).squeeze(-1), v_int

    def dist(self, x: Tensor) -> tuple[torch.distributions.Distribution, Tensor]:
        """Action distribution and the trunk features (reused by the critics)."""
        f = self._features(x)
        out = self.actor(self.actor_body(f))
        if self.discrete:
            return Categorical(logits=out), f
        return Normal(out, self.actor_logstd.expand_as(out).exp()), f

    def act(self, x: Tensor, action: Tensor | None = None, deterministic: bool = False):
        """Sample (or score) actions: returns action, log-prob, entropy, value_ext, value_int."""
        dist, f = self.dist(x)
        if action is None:
            if deterministic:
                action = dist.probs.argmax(-1) if self.discrete else dist.mean  # type: ignore[attr-defined]
            else:
                action = dist.sample()
        logp, ent = dist.log_prob(action), dist.entropy()
        if not self.discrete:
            logp, ent = logp.sum(-1), ent.sum(-1)
        h = self.critic_body(f)
        v_int = self.critic_int(h).squeeze(-1) if self.critic_int is not None else torch.zeros_like(logp)
        return action, logp, ent, self.critic_ext(h).squeeze(-1), v_int


# ------------------------------------------------------------------------------------------ helpers
def label(cfg: PPOConfig) -> str:
    """Run-folder label: ``ppo`` or ``ppo-rnd``/``ppo-rdd``."""
    return "ppo" if cfg.intrinsic == "none" else f"ppo-{cfg.intrinsic}"


def check_spaces(obs_space: gym.Space, action_space: gym.Space, env_id: str) -> None:
    """PPO handles Box observations and Discrete or Box actions; anything else is a user error."""
    if not isinstance(obs_space, gym.spaces.Box) or len(obs_space.shape) not in (1, 3):
        got = describe_space(obs_space)
        raise UserError(f"PPO needs a flat or image Box observation space; {env_id} has {got}")
    if is_image(obs_space.shape):
        if obs_space.dtype != np.uint8:
            got = describe_space(obs_space)
            raise UserError(f"PPO reads rank-3 observations as uint8 images; {env_id} has {got}")
        try:
            channels_last(obs_space.shape)
        except ValueError as exc:
            raise UserError(f"{env_id}: {exc}") from None
    if not isinstance(action_space, gym.spaces.Discrete | gym.spaces.Box):
        raise UserError(f"PPO needs Discrete or Box actions; {env_id} has {describe_space(action_space)}")


class ObsPreprocessor(nn.Module):
    """Turns raw env observations into network input: images stay uint8, vectors become float32,
    optionally normalized by running statistics (updated only while training)."""

    def __init__(self, obs_space: gym.spaces.Box, normalize: bool) -> None:
        super().__init__()
        self.image = is_image(tuple(obs_space.shape))
        self.rms = RunningMeanStd(tuple(obs_space.shape)) if normalize and not self.image else None

    def forward(self, obs: np.ndarray, device: torch.device, update: bool) -> Tensor:
        x = torch.as_tensor(obs, device=device)
        if self.image:
            return x
        x = x.float()
        if self.rms is None:
            return x
        if update:
            self.rms.update(x)
        return self.rms.normalize(x, clip=10.0).float()


def to_env_action(action: Tensor, action_space: gym.Space) -> np.ndarray:
    """Tensor actions to what the env takes (Gaussian samples clipped to the Box bounds)."""
    a = action.cpu().numpy()
    if isinstance(action_space, gym.spaces.Box):
        return np.clip(a, action_space.low, action_space.high).astype(action_space.dtype)
    return a


def init_intrinsic_obs_stats(
    envs: gym.vector.VectorEnv, module: IntrinsicModule, steps: int, obs: np.ndarray, device: torch.device
) -> np.ndarray:
    """RND's explicit initialisation: fold ``steps`` random-agent observations into the module's
    observation statistics (Burda et al. 2018, section 2.4). Takes and returns the env's current
    observation (unchanged when ``steps`` is 0)."""
    chunk: list[np.ndarray] = []
    for i in range(math.ceil(steps / envs.num_envs)):
        obs, *_ = envs.step(envs.action_space.sample())
        chunk.append(obs)
        if len(chunk) == 32 or i == math.ceil(steps / envs.num_envs) - 1:
            module.init_obs_stats(torch.as_tensor(np.concatenate(chunk), device=device))
            chunk = []
    return obs


# ------------------------------------------------------------------------------------------ training
def train(cfg: PPOConfig, run: Run, checkpoint: dict[str, Any] | None = None) -> None:
    """Train PPO on ``cfg.env_id``, logging to and checkpointing into ``run``.

    Args:
        cfg: Resolved config.
        run: Run folder to write.
        checkpoint: Payload of ``run.load_checkpoint()`` to resume from, or None for a fresh run.
    """
    device = torch.device(cfg.device)
    seed_everything(cfg.seed)
    global_step = int(checkpoint["step"]) if checkpoint else 0
    # A resumed run starts fresh episodes, seeded by where it stopped, so it never replays the same ones.
    envs = make_vec(cfg.env_id, cfg.num_envs, cfg.seed + global_step, cfg.env_backend, **cfg.env_kwargs)
    obs_space, action_space = envs.single_observation_space, envs.single_action_space
    check_spaces(obs_space, action_space, cfg.env_id)
    if cfg.torch_threads or not is_image(tuple(obs_space.shape)):
        # Measured on 2 cores: tiny MLP updates run ~2x faster on one thread than on two.
        torch.set_num_threads(cfg.torch_threads or 1)
    envs.action_space.seed(cfg.seed + global_step)

    intrinsic = make_intrinsic(
        cfg.intrinsic,
        obs_space,
        cfg.num_envs,
        gamma_int=cfg.gamma_int,
        update_proportion=cfg.int_update_proportion,
        output_dim=cfg.int_output_dim or None,
        rdd_sigma=cfg.rdd_sigma or None,
        device=device,
    )
    agent = Agent(obs_space, action_space, cfg.hidden_size, int_head=intrinsic is not None).to(device)
    prep = ObsPreprocessor(obs_space, cfg.norm_obs).to(device)
    reward_scaler = DiscountedReturnScaler(cfg.num_envs, cfg.gamma, episodic=True).to(device)
    # The intrinsic target network is frozen: only parameters that require grad are optimized.
    agent_params = list(agent.parameters())
    predictor_params = [p for p in intrinsic.parameters() if p.requires_grad] if intrinsic is not None else []
    # fused: one kernel for all parameters; ~6x faster than the per-tensor loop on CPU (measured).
    optimizer = torch.optim.Adam(agent_params + predictor_params, lr=cfg.learning_rate, eps=1e-5, fused=True)
    guard = UpdateGuard(cfg.on_nonfinite)

    T, N = cfg.num_steps, cfg.num_envs
    batch_size = T * N
    minibatch_size = batch_size // cfg.num_minibatches
    num_iterations = math.ceil(cfg.total_steps / batch_size)
    iteration = 0
    if checkpoint:
        state = checkpoint["state"]
        load_state(agent, state["agent"], "agent")
        load_state(prep, state["prep"], "observation normalizer")
        load_state(reward_scaler, state["reward_scaler"], "reward scaler")
        load_state(optimizer, state["optimizer"], "optimizer")
        if intrinsic is not None:
            load_state(intrinsic, state["intrinsic"], "intrinsic module")
        iteration = int(state["iteration"])
        guard.load_state_dict(state.get("guard", {}))
        set_rng_state(state["rng"])
        # The learner continues exactly; envs cannot be saved, so episodes start afresh and the
        # per-env running extrinsic returns of reward scaling restart with them.
        reward_scaler.returns.zero_()

    obs, _ = envs.reset(seed=cfg.seed + global_step)
    check_finite(f"env {cfg.env_id}", global_step, observation=obs)
    if intrinsic is not None and not checkpoint:
        obs = init_intrinsic_obs_stats(envs, intrinsic, cfg.int_init_steps, obs, device)
    run.start()

    # Rollout storage, (T, N, ...).
    img = prep.image
    obs_buf = torch.zeros(
        (T, N, *obs_space.shape), dtype=torch.uint8 if img else torch.float32, device=device
    )
    next_obs_buf = torch.zeros_like(obs_buf) if intrinsic is not None else None
    act_dtype = torch.long if agent.discrete else torch.float32
    actions = torch.zeros((T, N, *action_space.shape), dtype=act_dtype, device=device)
    logprobs, rewards, terminated, ended, v_ext, v_int, boot_ext = (
        torch.zeros((T, N), device=device) for _ in range(7)
    )

    ep_returns: list[float] = []
    ep_lengths: list[float] = []
    ep_success: list[float] = []
    ep_int_returns: list[float] = []
    int_acc = torch.zeros(N, device=device)
    last_log = global_step
    start_time, start_step = time.time(), global_step
    progress = Progress(cfg.total_steps, global_step, f"{label(cfg)} {cfg.env_id}")

    while iteration < num_iterations:
        if cfg.anneal_lr:
            optimizer.param_groups[0]["lr"] = cfg.learning_rate * (1.0 - iteration / num_iterations)

        # ---------------------------------------------------------------- rollout
        for t in range(T):
            with torch.no_grad():
                x = prep(obs, device, update=True)
                action, logp, _, value_ext, value_int = act_checked(agent, x, global_step)
            next_obs, reward, term, trunc, info = envs.step(to_env_action(action, action_space))
            global_step += N
            check_finite(f"env {cfg.env_id}", global_step, observation=next_obs, reward=reward)
            done = np.logical_or(term, trunc)
            obs_buf[t], actions[t], logprobs[t], v_ext[t], v_int[t] = x, action, logp, value_ext, value_int
            reward_t = torch.as_tensor(reward, dtype=torch.float32, device=device)
            if cfg.norm_reward:
                reward_scaler.update(reward_t[None], torch.as_tensor(done, device=device)[None])
                reward_t = reward_scaler.scale(reward_t)
            rewards[t] = reward_t
            terminated[t] = torch.as_tensor(term, dtype=torch.float32, device=device)
            ended[t] = torch.as_tensor(done, dtype=torch.float32, device=device)
            if next_obs_buf is not None:
                # The bonus is measured on the observation the stream continues from: at an episode
                # end that is the next episode's first one, as in the RND reference code. Scoring the
                # terminal observation instead pays the agent for crashing somewhere new.
                next_obs_buf[t] = torch.as_tensor(next_obs, device=device)
            boot_ext[t] = 0.0
            cut = np.logical_and(trunc, ~term)
            if cut.any():
                real_next = final_observations(info, next_obs)
                # Bootstrap the time limit with the value of the observation it cut off.
                with torch.no_grad():
                    boot = agent.values(prep(real_next[cut], device, update=False))[0]
                boot_ext[t, torch.as_tensor(cut, device=device)] = boot
            if "_episode" in info:
                mask = info["_episode"]
                ep_returns.extend(info["episode"]["r"][mask].tolist())
                ep_lengths.extend(info["episode"]["l"][mask].tolist())
                if "success" in info["episode"]:
                    ep_success.extend(info["episode"]["success"][mask].astype(float).tolist())
            obs = next_obs

        # ---------------------------------------------------------------- returns and advantages
        with torch.no_grad():
            last_ext, last_int = agent.values(prep(obs, device, update=False))
            next_ext = torch.cat([v_ext[1:], last_ext[None]])
            next_ext = torch.where(ended.bool(), boot_ext, next_ext)
            adv_ext = gae(rewards, v_ext, next_ext, terminated, ended, cfg.gamma, cfg.gae_lambda)
            ret_ext = adv_ext + v_ext
            int_logs: dict[str, float] = {}
            if intrinsic is not None:
                flat_next = next_obs_buf.reshape(batch_size, *obs_space.shape)
                # In chunks: the same values, at a fraction of the peak memory (and page faults).
                raw_bonus = torch.cat([intrinsic.bonus(c) for c in flat_next.split(256)]).reshape(T, N)
                int_rewards = intrinsic.normalize_rewards(raw_bonus)
                # A diverged predictor would reach the policy loss as NaN and be misnamed there.
                bonus_np = int_rewards.cpu().numpy()
                check_finite(f"the {cfg.intrinsic} module", global_step, DIVERGED, intrinsic_reward=bonus_np)
                intrinsic.update_obs_stats(flat_next)
                # Non-episodic intrinsic return: no termination, no episode cut (RND section 2.3).
                next_int = torch.cat([v_int[1:], last_int[None]])
                zeros = torch.zeros_like(rewards)
                adv_int = gae(int_rewards, v_int, next_int, zeros, zeros, cfg.gamma_int, cfg.gae_lambda)
                ret_int = adv_int + v_int
                advantages = cfg.ext_coef * adv_ext + cfg.int_coef * adv_int
                for t in range(T):
                    int_acc += int_rewards[t]
                    done_t = ended[t].bool()
                    ep_int_returns.extend(int_acc[done_t].tolist())
                    int_acc[done_t] = 0.0
                int_logs = {
                    "intrinsic/reward_mean": int_rewards.mean().item(),
                    "intrinsic/reward_std": int_rewards.std().item(),
                    "intrinsic/raw_bonus_mean": raw_bonus.mean().item(),
                }
            else:
                ret_int = torch.zeros_like(ret_ext)
                advantages = adv_ext

        # ---------------------------------------------------------------- PPO update
        b_obs = obs_buf.reshape(batch_size, *obs_space.shape)
        b_next = next_obs_buf.reshape(batch_size, *obs_space.shape) if next_obs_buf is not None else None
        b_actions = actions.reshape(batch_size, *action_space.shape)
        b_logprobs, b_adv = logprobs.reshape(-1), advantages.reshape(-1)
        b_ret_ext, b_ret_int = ret_ext.reshape(-1), ret_int.reshape(-1)
        b_v_ext, b_v_int = v_ext.reshape(-1), v_int.reshape(-1)
        clipfracs: list[float] = []
        stats: dict[str, float] = {}
        guard.step = global_step
        for _epoch in range(cfg.update_epochs):
            perm = torch.randperm(batch_size, device=device)
            for start in range(0, batch_size, minibatch_size):
                mb = perm[start : start + minibatch_size]
                _, newlogp, entropy, new_ext, new_int = agent.act(b_obs[mb], b_actions[mb])
                logratio = newlogp - b_logprobs[mb]
                ratio = logratio.exp()
                with torch.no_grad():
                    approx_kl = ((ratio - 1) - logratio).mean()
                    clipfracs.append(((ratio - 1.0).abs() > cfg.clip_coef).float().mean().item())
                mb_adv = b_adv[mb]
                if cfg.norm_adv:
                    mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                pg_loss = torch.max(
                    -mb_adv * ratio, -mb_adv * torch.clamp(ratio, 1 - cfg.clip_coef, 1 + cfg.clip_coef)
                ).mean()
                v_loss = value_loss(new_ext, b_ret_ext[mb], b_v_ext[mb], cfg)
                if intrinsic is not None:
                    v_loss = v_loss + value_loss(new_int, b_ret_int[mb], b_v_int[mb], cfg)
                entropy_loss = entropy.mean()
                terms = {"policy": pg_loss, "value": v_loss, "entropy": entropy_loss}
                loss = pg_loss - cfg.ent_coef * entropy_loss + cfg.vf_coef * v_loss
                if intrinsic is not None:
                    terms["predictor"] = predictor = intrinsic.loss(b_next[mb])["predictor"]
                    loss = loss + predictor
                    stats["intrinsic/predictor_loss"] = predictor.item()
                optimizer.zero_grad()
                loss.backward()
                # Clipped separately: CleanRL's RND clips policy and predictor together, so a large
                # predictor gradient (RDD regresses onto noisy targets, loss ~ sigma^2) would shrink
                # the policy's step through the shared norm.
                norms = {"agent": nn.utils.clip_grad_norm_(agent_params, cfg.max_grad_norm)}
                if predictor_params:
                    norms["predictor"] = nn.utils.clip_grad_norm_(predictor_params, cfg.max_grad_norm)
                if guard.ok(terms, norms):
                    optimizer.step()
            if cfg.target_kl and approx_kl > cfg.target_kl:
                break
        if intrinsic is not None:  # diagnostics of this update's last predictor minibatch
            int_logs.update({f"intrinsic/{k}": v for k, v in intrinsic.metrics().items()})
        iteration += 1

        # ---------------------------------------------------------------- logging and checkpoints
        y_pred, y_true = b_v_ext.cpu().numpy(), b_ret_ext.cpu().numpy()
        var_y = np.var(y_true)
        sps = (global_step - start_step) / max(time.time() - start_time, 1e-9)
        if global_step - last_log >= cfg.log_interval or iteration == num_iterations:
            last_log = global_step
            scalars = {
                "charts/SPS": sps,
                "charts/learning_rate": optimizer.param_groups[0]["lr"],
                "losses/policy_loss": pg_loss.item(),
                "losses/value_loss": v_loss.item(),
                "losses/entropy": entropy_loss.item(),
                "losses/approx_kl": approx_kl.item(),
                "losses/clipfrac": float(np.mean(clipfracs)),
                "losses/explained_variance": float("nan")
                if var_y == 0
                else float(1 - np.var(y_true - y_pred) / var_y),
                **stats,
                **int_logs,
            }
            if guard.mode == "skip":
                scalars["charts/skipped_updates"] = guard.skipped
            if ep_returns:
                scalars["charts/episodic_return"] = float(np.mean(ep_returns))
                scalars["charts/episodic_length"] = float(np.mean(ep_lengths))
            if ep_success:
                scalars["charts/success_rate"] = float(np.mean(ep_success))
            if ep_int_returns:
                scalars["charts/episodic_intrinsic_return"] = float(np.mean(ep_int_returns))
            run.log_scalars(global_step, scalars)
            progress.update(
                global_step,
                SPS=sps,
                ret=scalars.get("charts/episodic_return"),
                success=scalars.get("charts/success_rate"),
            )
            ep_returns, ep_lengths, ep_success, ep_int_returns = [], [], [], []
        if global_step // cfg.checkpoint_interval != (
            global_step - batch_size
        ) // cfg.checkpoint_interval or (iteration == num_iterations):
            state = {
                "agent": agent.state_dict(),
                "prep": prep.state_dict(),
                "reward_scaler": reward_scaler.state_dict(),
                "optimizer": optimizer.state_dict(),
                "intrinsic": intrinsic.state_dict() if intrinsic is not None else {},
                "iteration": iteration,
                "rng": rng_state(),
                "guard": guard.state_dict(),
            }
            run.save_checkpoint(global_step, state, keep=cfg.keep_checkpoints)
    progress.close()
    envs.close()
    run.close()


def act_checked(agent: Agent, x: Tensor, step: int) -> tuple[Tensor, ...]:
    """``agent.act(x)``, where a policy that outputs NaN/inf (its weights diverged) is one user error."""
    try:
        return agent.act(x)
    except ValueError as exc:  # torch.distributions rejects NaN/inf parameters
        if "invalid values" not in str(exc):
            raise
        msg = f"the policy gave non-finite action probabilities at step {step}; {DIVERGED}"
        raise UserError(msg) from None


def value_loss(new: Tensor, returns: Tensor, old: Tensor, cfg: PPOConfig) -> Tensor:
    """Squared value error, optionally clipped around the rollout's values (PPO reference code)."""
    if not cfg.clip_vloss:
        return 0.5 * (new - returns).square().mean()
    clipped = old + torch.clamp(new - old, -cfg.clip_coef, cfg.clip_coef)
    return 0.5 * torch.max((new - returns).square(), (clipped - returns).square()).mean()


# ------------------------------------------------------------------------------------------ policy for eval
class Policy:
    """A trained PPO policy for evaluation and data collection (stateless: ``first`` is ignored)."""

    def __init__(
        self, agent: Agent, prep: ObsPreprocessor, action_space: gym.Space, device: torch.device
    ) -> None:
        self.agent, self.prep, self.action_space, self.device = (
            agent.eval(),
            prep.eval(),
            action_space,
            device,
        )

    @torch.no_grad()
    def act(self, obs: np.ndarray, first: np.ndarray, deterministic: bool = False) -> np.ndarray:
        action = self.agent.act(self.prep(obs, self.device, update=False), deterministic=deterministic)[0]
        return to_env_action(action, self.action_space)


def load_policy(run: Run, checkpoint: dict[str, Any], device: str = "cpu") -> Policy:
    """Rebuild the policy a checkpoint holds (spaces come from a 1-env instance of the run's env)."""
    from rlkd.config import from_dict

    cfg = from_dict(PPOConfig, checkpoint["config"], f"{run.path}/config.yaml")
    envs = make_vec(cfg.env_id, 1, cfg.seed, cfg.env_backend, **cfg.env_kwargs)
    obs_space, action_space = envs.single_observation_space, envs.single_action_space
    envs.close()
    dev = torch.device(device)
    agent = Agent(obs_space, action_space, cfg.hidden_size, int_head=cfg.intrinsic != "none").to(dev)
    prep = ObsPreprocessor(obs_space, cfg.norm_obs).to(dev)
    state = checkpoint["state"]
    try:
        agent.load_state_dict(state["agent"])
        prep.load_state_dict(state["prep"])
    except (KeyError, RuntimeError) as exc:
        raise UserError(
            f"checkpoint of {run.path} does not match a PPO agent for {cfg.env_id}: {exc}"
        ) from None
    return Policy(agent, prep, action_space, dev)
