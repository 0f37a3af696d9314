"""Proximal Policy Optimization with optional intrinsic rewards (RND, RDD), readable top to bottom.

The algorithm follows CleanRL's ``ppo.py``/``ppo_atari_envpool.py``/``ppo_rnd_envpool.py`` and the
implementation details listed by Huang et al. (2022, "The 37 Implementation Details of PPO"):
orthogonal init, LR annealing, GAE, minibatch advantage normalization, clipped policy and value
losses, gradient-norm clipping (of the policy's and the intrinsic predictor's gradients separately,
where CleanRL's RND clips them together: see ``PPO.step_optimizer``). On top of that:

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

Reading order: config and presets; ``train``; the ``PPO`` class: ``iterate`` is CleanRL's loop
body (a rollout of ``num_steps`` vector steps into the buffer, then ``update``: ``advantages``, and
``learn``'s epochs over the minibatches the buffer serves, with ``loss``); the evaluation policy.
The networks are in ``ppo_networks.py``, the rollout storage in ``ppo_buffer.py``; the shared loop
(``rlkd/core/loop.py``) does what every agent needs once: resume, checkpoints, logging, and at each
vector step the non-finite checks, episode statistics and env callbacks (``loop.Envs.step``).

Shapes: ``T`` = ``num_steps``, ``N`` = ``num_envs``, ``B = T*N``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from rlkd.agents import Inspection
from rlkd.agents.ppo_buffer import Minibatch, RolloutBuffer
from rlkd.agents.ppo_networks import ActorCritic, NonFinitePolicy, ObsNormalizer, to_env_action
from rlkd.envs import make_vec
from rlkd.envs.wrappers import final_observations
from torch import Tensor

from rlkd.core import distributed, loop
from rlkd.core.config import TrainConfig, check_ranges, read_presets, to_dict
from rlkd.core.guard import DIVERGED, UpdateGuard, check_finite
from rlkd.core.media import VideoRecorder
from rlkd.core.run import Run, load_state, seed_everything
from rlkd.core.spaces import space_from_data, space_to_data
from rlkd.errors import UserError, describe_space
from rlkd.intrinsic import INTRINSIC_NAMES, IntrinsicModule, make_intrinsic, rnd_update_proportion
from rlkd.nn.nets import channels_last, is_image, numpy32
from rlkd.nn.optim import FusedAdam, clip_grad_norm_
from rlkd.nn.returns import gae
from rlkd.nn.stats import DiscountedReturnScaler


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
    anneal_clip: bool = False
    """Decay the clipping coefficient linearly to 0 over training too (rl-zoo3's ``clip_range: lin_``)."""
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
    """Clip the extrinsic value loss around the old values, as the PPO reference code does (the
    intrinsic head's loss is never clipped: CleanRL's ``ppo_rnd_envpool.py`` and the RND code)."""
    ent_coef: float = 0.01
    """Entropy bonus coefficient."""
    vf_coef: float = 0.5
    """Value loss coefficient."""
    max_grad_norm: float = 0.5
    """Gradient-norm clip (the policy's and the intrinsic predictor's gradients each to this norm)."""
    target_kl: float = 0.0
    """Stop the epoch loop early when the approximate KL exceeds this; 0 disables."""
    hidden_size: int = 64
    """Width of the two hidden layers of the MLP actor and critic (vector observations)."""
    policy_net: str = "nature"
    """Network for image observations: nature (Nature CNN + 512, CleanRL's ppo_atari) or rnd (the RND
    paper's: Nature CNN + 256 + 448, a residual 448 layer for the values, a 448 actor layer, 0.01-gain
    heads, as CleanRL's ppo_rnd_envpool.py)."""
    norm_obs: bool = False
    """Normalize vector observations by running mean/std (clipped to [-10, 10]) as VecNormalize."""
    norm_reward: bool = False
    """Scale extrinsic rewards by the running std of the discounted return, then clip to [-10, 10]
    (SB3's VecNormalize, CleanRL's ppo_continuous_action.py)."""
    ext_coef: float = 2.0
    """Weight of the extrinsic advantage when an intrinsic module is on (RND paper: 2)."""
    int_coef: float = 1.0
    """Weight of the intrinsic advantage (RND paper: 1)."""
    gamma_int: float = 0.99
    """Discount of the non-episodic intrinsic return (RND paper: 0.99)."""
    int_update_proportion: float | None = None
    """Fraction of each minibatch the intrinsic predictor trains on; none: the RND rule
    min(1, 32 / num_envs) (CleanRL: 0.25 with 128 envs; the RND code: 1.0 with 32)."""
    int_output_dim: int | None = None
    """Intrinsic target/predictor output size; none: module default (RND 128, RDD 64 vectors; 512 pixels)."""
    rdd_sigma: float | None = None
    """Std of RDD's target distribution; none: the module's default (1, reported as the paper's)."""
    rdd_target_mean: float | None = None
    """Offset m of RDD's target mean mu(s) + m; none: the module's default (1, reported as the paper's)."""
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
            non_negative=("ent_coef", "vf_coef", "target_kl", "ext_coef", "int_coef", "int_init_steps"),
            unit=("gamma", "gae_lambda", "gamma_int"),
        )  # fmt: skip
        if self.policy_net not in ("nature", "rnd"):
            raise UserError(f"--policy-net must be nature or rnd, got {self.policy_net!r}")
        if (self.num_envs * self.num_steps) % self.num_minibatches:
            raise UserError(
                f"num_envs*num_steps ({self.num_envs * self.num_steps}) must be divisible by "
                f"num_minibatches ({self.num_minibatches})"
            )
        check_ranges(self, positive=("int_output_dim", "rdd_sigma"))
        if self.int_update_proportion is not None and not 0.0 < self.int_update_proportion <= 1.0:
            raise UserError(f"--int-update-proportion must be in (0, 1], got {self.int_update_proportion}")

    def __post_init__(self) -> None:
        # Runs saved before these fields took None for "default" wrote 0; they still resume and evaluate.
        for name in ("int_output_dim", "rdd_sigma"):
            if getattr(self, name) == 0:
                setattr(self, name, None)


CONFIG = PPOConfig
DISTRIBUTED = True

PRESETS = read_presets(Path(__file__).with_name("presets") / "ppo.yaml")
"""Named field overrides (``--preset``), in ``agents/presets/ppo.yaml`` with where each comes from."""


# ------------------------------------------------------------------------------------------ helpers
def finalize(cfg: PPOConfig) -> PPOConfig:
    """Nothing is derived from PPO's inputs."""
    return cfg


def env_kwargs_for(cfg: PPOConfig) -> dict[str, Any]:
    """``make_vec`` keywords of the run: its ``env_kwargs`` as given."""
    return dict(cfg.env_kwargs)


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


def init_intrinsic_obs_stats(
    envs: gym.vector.VectorEnv, module: IntrinsicModule, steps: int, obs: np.ndarray, device: torch.device
) -> np.ndarray:
    """RND's explicit initialisation: fold ``steps`` random-agent observations into the module's
    observation statistics (Burda et al. 2018, section 2.4). Takes and returns the env's current
    observation (unchanged when ``steps`` is 0)."""
    chunk: list[np.ndarray] = []
    for i in range(math.ceil(steps / envs.num_envs)):
        obs, *_ = envs.step(envs.action_space.sample())
        check_finite("env during the intrinsic warm-up", 0, observation=obs)
        chunk.append(obs)
        if len(chunk) == 32 or i == math.ceil(steps / envs.num_envs) - 1:
            module.init_obs_stats(torch.as_tensor(np.concatenate(chunk), device=device))
            chunk = []
    return obs


# ------------------------------------------------------------------------------------------ training
def train(cfg: PPOConfig, run: Run | None, checkpoint: dict[str, Any] | None = None) -> None:
    """Train PPO on ``cfg.env_id`` with the shared loop, logging to and checkpointing into ``run``.

    Args:
        cfg: Resolved config.
        run: Run folder to write (None on ranks other than 0 of a distributed job).
        checkpoint: Payload of ``run.load_checkpoint()`` to resume from, or None for a fresh run.
    """
    seed_everything(cfg.seed)
    step = int(checkpoint["step"]) if checkpoint else 0
    world = distributed.world()
    envs = make_vec(cfg.env_id, cfg.num_envs, loop.env_seed(cfg, step), cfg.env_backend, **cfg.env_kwargs)
    try:
        obs_space, action_space = envs.single_observation_space, envs.single_action_space
        check_spaces(obs_space, action_space, cfg.env_id)
        if cfg.torch_threads or not is_image(tuple(obs_space.shape)):
            # Measured on 2 cores: tiny MLP updates run ~2x faster on one thread than on two.
            torch.set_num_threads(cfg.torch_threads or 1)
        algo = PPO(cfg, obs_space, action_space)
        if world.rank:  # every rank starts from rank 0's weights, then samples its own actions
            seed_everything(cfg.seed + 1000 * world.rank)
    except BaseException:
        envs.close()
        raise
    every = cfg.capture_video
    videos = [VideoRecorder(to_dict(cfg), cfg.env_kwargs, algo, every)] if every and world.main else []
    loop.train(cfg, run, checkpoint, envs, algo, videos)


class PPO:
    """PPO (+ RND/RDD) as the shared loop drives it: collect a rollout, then advantages and update.

    Args:
        cfg: Resolved config.
        obs_space: One env's observation space (checked by :func:`check_spaces`).
        action_space: One env's action space.
    """

    def __init__(self, cfg: PPOConfig, obs_space: gym.spaces.Box, action_space: gym.Space) -> None:
        self.cfg, self.obs_space, self.action_space = cfg, obs_space, action_space
        self.label = f"{label(cfg)} {cfg.env_id}"
        self.device = device = distributed.device(cfg.device)
        self.world = distributed.world()
        # The RND rule counts the whole job's envs: the predictor's update rate stays that of one process.
        proportion = cfg.int_update_proportion or rnd_update_proportion(cfg.num_envs * self.world.size)
        self.intrinsic = make_intrinsic(
            cfg.intrinsic, obs_space, cfg.num_envs, gamma_int=cfg.gamma_int,
            update_proportion=proportion, output_dim=cfg.int_output_dim,
            rdd_sigma=cfg.rdd_sigma, rdd_target_mean=cfg.rdd_target_mean, device=device,
        )  # fmt: skip
        int_head = self.intrinsic is not None
        net = ActorCritic(obs_space, action_space, cfg.hidden_size, int_head, cfg.policy_net)
        self.agent = net.to(device)
        self.prep = ObsNormalizer(obs_space, cfg.norm_obs).to(device)
        # On the host whatever the device: rewards arrive as numpy arrays, one small batch per step.
        self.reward_scaler = DiscountedReturnScaler(cfg.num_envs, cfg.gamma, episodic=True)
        # The intrinsic target network is frozen: only parameters that require grad are optimized.
        self.agent_params = list(self.agent.parameters())
        predictor = self.intrinsic.parameters() if self.intrinsic is not None else []
        self.predictor_params = [p for p in predictor if p.requires_grad]
        # Fused: one kernel for all parameters; ~6x faster than the per-tensor loop on CPU (measured).
        params = self.agent_params + self.predictor_params
        self.optimizer = FusedAdam(params, lr=cfg.learning_rate, eps=1e-5)
        for module in (self.agent, self.intrinsic, self.prep):
            if module is not None:
                distributed.broadcast_module_(module)
        # Minibatch permutations: one stream, the same on every rank (see learn).
        self.batch_rng = torch.Generator().manual_seed(cfg.seed)
        T, N = cfg.num_steps, cfg.num_envs
        self.num_iterations = math.ceil(cfg.total_steps / (T * N * self.world.size))
        self.iteration = 0
        self.clip = cfg.clip_coef
        # Constants of the loss as tensors: a Python number operand is wrapped into a new tensor at
        # every op, which costs more than the op on a minibatch of 64.
        self.half_vf_coef, self.ent_coef = torch.tensor(0.5 * cfg.vf_coef), torch.tensor(cfg.ent_coef)
        self.buffer = RolloutBuffer(
            T, N, tuple(obs_space.shape), self.prep.image, tuple(action_space.shape), self.agent.discrete,
            self.intrinsic is not None, self.world, device,
        )  # fmt: skip
        self.int_acc = torch.zeros(N, device=device)  # running intrinsic return of each env's episode

    # ---------------------------------------------------------------- one iteration: rollout, then update
    def start(
        self, envs: Any, obs: np.ndarray, step: int, resumed: bool, note: Callable[[str], None]
    ) -> np.ndarray:
        if self.intrinsic is not None and not resumed and self.cfg.int_init_steps:
            note(f"warm-up: {self.cfg.int_init_steps} random-agent steps for the {self.cfg.intrinsic} "
                 "observation statistics (RND paper, section 2.4)")  # fmt: skip
            steps = math.ceil(self.cfg.int_init_steps / self.world.size)  # the job's total, shared out
            obs = init_intrinsic_obs_stats(envs, self.intrinsic, steps, obs, self.device)
        return obs

    def iterate(self, envs: loop.Envs, guard: UpdateGuard) -> dict[str, float]:
        """One PPO iteration, CleanRL's loop body: ``num_steps`` vector steps, then the update."""
        cfg, dev = self.cfg, self.device
        frac = 1.0 - self.iteration / self.num_iterations  # this iteration's schedules
        if cfg.anneal_lr:
            self.optimizer.param_groups[0]["lr"] = cfg.learning_rate * frac
        self.clip = cfg.clip_coef * frac if cfg.anneal_clip else cfg.clip_coef
        for _ in range(cfg.num_steps):
            with torch.inference_mode():  # lighter than no_grad; only copies of these tensors are kept
                x = self.prep(envs.obs, dev, update=True)
                action, logp, value_ext, value_int = act_checked(self.agent, x, envs.steps)
            tr = envs.step(to_env_action(action, self.action_space))
            reward, ended, boot_ext = self.step_rewards(tr)
            # The bonus is measured on the observation the stream continues from: at an episode
            # end that is the next episode's first one, as in the RND reference code. Scoring the
            # terminal observation instead pays the agent for crashing somewhere new.
            next_obs = torch.as_tensor(tr.next_obs, device=dev) if self.intrinsic is not None else None
            self.buffer.add(
                x, action, logp, value_ext, value_int, reward, tr.terminated, ended, boot_ext, next_obs
            )
        return self.update(envs.obs, envs.steps, guard)

    def step_rewards(self, tr: loop.Transition) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(reward, ended, bootstrap value) of one vector step, each (N,): the reward scaled when
        ``norm_reward``; where a time limit cut an episode, the value of the observation it cut off."""
        done = np.logical_or(tr.terminated, tr.truncated)
        reward = np.asarray(tr.reward, dtype=np.float32)
        if self.cfg.norm_reward:
            self.reward_scaler.update(reward[None], done[None])
            reward = np.clip(self.reward_scaler.scale(reward), -10.0, 10.0)
        boot_ext = np.zeros(len(done), np.float32)
        cut = np.logical_and(tr.truncated, ~tr.terminated)
        if cut.any():
            real_next = final_observations(tr.info, tr.next_obs)
            # Bootstrap the time limit with the value of the observation it cut off (Pardo et al. 2018).
            with torch.no_grad():
                boot = self.agent.values(self.prep(real_next[cut], self.device, update=False))[0]
            boot_ext[cut] = boot.cpu().numpy()
        return reward, done, boot_ext

    def status(self) -> dict[str, float]:
        return {"charts/learning_rate": self.optimizer.param_groups[0]["lr"]}

    def media(self, step: int) -> dict[str, Tensor]:
        return {}

    def policy(self) -> Policy:
        return Policy(self.agent, self.prep, self.obs_space, self.action_space, self.device)

    # ---------------------------------------------------------------- returns and advantages
    @torch.no_grad()
    def advantages(self, last_obs: np.ndarray, step: int) -> tuple[Tensor, Tensor, Tensor, dict[str, float]]:
        """(advantages, extrinsic returns, intrinsic returns, intrinsic logs), each (T, N), of the
        buffer's rollout, which ``last_obs`` (N, *obs_shape) continues."""
        cfg, buf = self.cfg, self.buffer
        last_ext, last_int = self.agent.values(self.prep(last_obs, self.device, update=False))
        rewards, terminated, ended, boot_ext = torch.from_numpy(buf.step_scalars).to(self.device).unbind(0)
        next_ext = torch.cat([buf.v_ext[1:], last_ext[None]])
        next_ext = torch.where(ended.bool(), boot_ext, next_ext)
        adv_ext = gae(rewards, buf.v_ext, next_ext, terminated, ended, cfg.gamma, cfg.gae_lambda)
        ret_ext = adv_ext + buf.v_ext
        if self.intrinsic is None:
            return adv_ext, ret_ext, torch.zeros_like(ret_ext), {}
        stream = self.intrinsic.rollout(buf.next_obs, buf.v_int, last_int, cfg.gae_lambda)
        # A diverged predictor would reach the policy loss as NaN and be misnamed there.
        bonus_np = stream.rewards.cpu().numpy()
        check_finite(f"the {cfg.intrinsic} module", step, DIVERGED, intrinsic_reward=bonus_np)
        logs = {
            "intrinsic/reward_mean": stream.rewards.mean().item(),
            "intrinsic/reward_std": stream.rewards.std().item(),
            "intrinsic/raw_bonus_mean": stream.raw_bonus.mean().item(),
        }
        ended_returns: list[float] = []  # diagnostics only: the intrinsic return of each finished episode
        for t in range(len(stream.rewards)):
            self.int_acc += stream.rewards[t]
            done_t = ended[t].bool()
            ended_returns.extend(self.int_acc[done_t].tolist())
            self.int_acc[done_t] = 0.0
        if ended_returns:
            logs["charts/episodic_intrinsic_return"] = float(np.mean(ended_returns))
        # The RND paper's mixing (section 2.3): one policy gradient on ext_coef A_ext + int_coef A_int.
        return cfg.ext_coef * adv_ext + cfg.int_coef * stream.advantages, ret_ext, stream.returns, logs

    # ---------------------------------------------------------------- update
    def update(self, last_obs: np.ndarray, step: int, guard: UpdateGuard) -> dict[str, float]:
        """After a full rollout (which ``last_obs`` continues): advantages, then ``update_epochs``
        passes of clipped PPO."""
        advantages, ret_ext, ret_int, int_logs = self.advantages(last_obs, step)
        logs = self.learn(advantages, ret_ext, ret_int, guard)
        if self.intrinsic is not None:  # diagnostics of this update's last predictor minibatch
            int_logs.update({f"intrinsic/{k}": v for k, v in self.intrinsic.metrics().items()})
        self.iteration += 1
        y_pred, y_true = self.buffer.v_ext.cpu().numpy().ravel(), ret_ext.cpu().numpy().ravel()
        var_y = np.var(y_true)
        logs["losses/explained_variance"] = (
            float("nan") if var_y == 0 else float(1 - np.var(y_true - y_pred) / var_y)
        )
        return {**logs, **int_logs}

    def learn(
        self, advantages: Tensor, ret_ext: Tensor, ret_int: Tensor, guard: UpdateGuard
    ) -> dict[str, float]:
        """The PPO epochs over minibatches of the rollout (advantages and returns ``(T, N)``).

        In a distributed job the buffer serves each rank its rows of the job's minibatches
        (:meth:`Batch.minibatches`); the loss holds sums over those rows divided by the job's
        minibatch size, and ``distributed.job_sums`` adds the gradients and terms of every rank. So
        the update is the one a single process with all the job's envs would make (tested to 1e-6).
        The RND reference code minibatches each rank's own envs instead (``ppo_agent.py``,
        ``mbenvinds``) and averages the gradients (``mpi_util.py``, ``MpiAdamOptimizer``): the same
        update in expectation, not the same numbers as one process.
        """
        cfg = self.cfg
        batch = self.buffer.flatten(advantages, ret_ext, ret_int)
        clipfracs: list[float] = []
        stats: dict[str, float] = {}
        for _epoch in range(cfg.update_epochs):
            for mb in batch.minibatches(cfg.num_minibatches, self.batch_rng):
                loss, terms, (ratio, logratio) = self.loss(mb)
                self.optimizer.zero_grad()
                loss.backward()
                terms = distributed.job_sums(self.agent_params + self.predictor_params, terms)
                clipfracs.append(float(terms.pop("clipped")) / mb.size)
                if "predictor" in terms:
                    stats["intrinsic/predictor_loss"] = float(terms["predictor"])
                self.step_optimizer(terms, guard)
            with torch.no_grad():  # of the epoch's last minibatch: what target_kl and the log read
                approx_kl = (((ratio - 1) - logratio).sum() / mb.size).reshape(1)
                distributed.all_reduce_([approx_kl])
            if cfg.target_kl and approx_kl > cfg.target_kl:
                break
        return {
            "losses/policy_loss": float(terms["policy"]) / mb.size,
            "losses/value_loss": 0.5 * float(terms["value"]) / mb.size,
            "losses/entropy": float(terms["entropy"]) / mb.size,
            "losses/approx_kl": float(approx_kl[0]),
            "losses/clipfrac": float(np.mean(clipfracs)),
            **stats,
        }

    def loss(self, mb: Minibatch) -> tuple[Tensor, dict[str, Tensor], tuple[Tensor, Tensor]]:
        """CleanRL's PPO loss on this rank's rows of a minibatch: (loss, its terms as sums over the
        rows, (ratio, log-ratio)). Means are sums divided by the job's minibatch size ``mb.size`` (on
        small networks the update costs per autograd op, not per number)."""
        cfg = self.cfg
        newlogp, entropy, new_ext, new_int = self.agent.evaluate(mb.obs, mb.actions)
        logratio = newlogp - mb.logprobs
        ratio = logratio.exp()
        mb_adv = normalize(mb.advantages, mb.size) if cfg.norm_adv else mb.advantages
        neg_adv = -mb_adv
        clipped = torch.clamp(ratio, 1 - self.clip, 1 + self.clip)
        pg_sum = larger(neg_adv * ratio, neg_adv * clipped).sum()
        v_err = value_sq_error(new_ext, mb.ret_ext, mb.v_ext, self.clip if cfg.clip_vloss else None)
        if self.intrinsic is not None:  # never clipped, as CleanRL's and the RND code's
            v_err = v_err + value_sq_error(new_int, mb.ret_int, mb.v_int, None)
        v_sum, entropy_sum = v_err.sum(), entropy.sum()
        # Without an entropy bonus its term stays out of the graph; the 1/2 of the squared value
        # error is in its coefficient (exact: a power of two).
        total = pg_sum - self.ent_coef * entropy_sum if cfg.ent_coef else pg_sum
        loss = (total + self.half_vf_coef * v_sum) / torch.tensor(float(mb.size))
        terms = {"policy": pg_sum, "value": v_sum, "entropy": entropy_sum}
        if self.intrinsic is not None:
            assert mb.next_obs is not None
            terms["predictor"] = self.intrinsic.loss(mb.next_obs)["predictor"]
            loss = loss + terms["predictor"]
        with torch.no_grad():  # ratios outside [1 - clip, 1 + clip]: those the clamp moved
            terms["clipped"] = torch.count_nonzero(clipped != ratio)
        return loss, terms, (ratio, logratio)

    def step_optimizer(self, terms: dict[str, Tensor], guard: UpdateGuard) -> None:
        """Clip, then step unless the guard finds a NaN/inf loss or gradient."""
        # Clipped separately: CleanRL's RND clips policy and predictor together, so a large
        # predictor gradient (RDD regresses onto noisy targets, loss ~ sigma^2) would shrink
        # the policy's step through the shared norm. (The RND code clips nothing: ppo_agent.py
        # computes `tf.clip_by_global_norm(grads, ...)` but applies the unclipped `grads`, and
        # run_atari.py sets max_grad_norm 0.)
        norms = {"agent": clip_grad_norm_(self.agent_params, self.cfg.max_grad_norm)}
        if self.predictor_params:
            norms["predictor"] = clip_grad_norm_(self.predictor_params, self.cfg.max_grad_norm)
        if guard.ok(terms, norms):
            self.optimizer.step()

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> dict[str, Any]:
        state = {
            "agent": self.agent.state_dict(),
            "prep": self.prep.state_dict(),
            "reward_scaler": self.reward_scaler.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "intrinsic": self.intrinsic.state_dict() if self.intrinsic is not None else {},
            "iteration": self.iteration,
            "batch_rng": self.batch_rng.get_state(),
            "spaces": {"obs": space_to_data(self.obs_space), "action": space_to_data(self.action_space)},
        }
        if self.intrinsic is not None and self.world.size > 1:
            # The non-episodic intrinsic return runs on per env: every rank's, for its own envs.
            state["int_returns_ranks"] = distributed.gather(self.intrinsic.reward_scaler.returns.cpu())
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        load_state(self.agent, state["agent"], "agent")
        load_state(self.prep, state["prep"], "observation normalizer")
        load_state(self.reward_scaler, state["reward_scaler"], "reward scaler")
        load_state(self.optimizer, state["optimizer"], "optimizer")
        if self.intrinsic is not None:
            load_state(self.intrinsic, state["intrinsic"], "intrinsic module")
            if "int_returns_ranks" in state:
                self.intrinsic.reward_scaler.returns.copy_(state["int_returns_ranks"][self.world.rank])
        self.iteration = int(state["iteration"])
        if "batch_rng" in state:  # checkpoints before it drew minibatches from the global stream
            self.batch_rng.set_state(state["batch_rng"])
        # The learner continues exactly; envs cannot be saved, so episodes start afresh and the
        # per-env running extrinsic returns of reward scaling restart with them.
        self.reward_scaler.returns.zero_()


def act_checked(agent: ActorCritic, x: Tensor, step: int) -> tuple[Tensor, ...]:
    """``agent.sample(x)``, where a policy that outputs NaN/inf (its weights diverged) is one user error."""
    try:
        return agent.sample(x)
    except NonFinitePolicy:
        msg = f"the policy gave non-finite action probabilities at step {step}; {DIVERGED}"
        raise UserError(msg) from None


def value_sq_error(new: Tensor, returns: Tensor, old: Tensor, clip: float | None) -> Tensor:
    """Per-sample squared value error ``(B,)`` (twice PPO's value loss), clipped to ``old +- clip``
    around the rollout's values if ``clip`` is given (PPO reference code)."""
    if clip is None:
        return (new - returns).square()
    clipped = old + torch.clamp(new - old, -clip, clip)
    return larger((new - returns).square(), (clipped - returns).square())


def larger(a: Tensor, b: Tensor) -> Tensor:
    """``torch.max(a, b)``, with ties resolved to ``a``: the same values, and the same gradients
    wherever the two inputs of a tie have the same derivative (PPO's clipped terms inside the clip
    range), where torch's backward gives each half; a select is cheaper to differentiate than the
    elementwise maximum, whose backward is the largest node of a small network's loss."""
    return torch.where(a >= b, a, b)


def normalize(adv: Tensor, count: int) -> Tensor:
    """Advantages of a minibatch of ``count`` samples (this rank holds ``adv``, the others the rest)
    shifted to mean 0 and scaled by the unbiased std + 1e-8, as CleanRL's per-minibatch rule."""
    sums = torch.stack([adv.sum(), adv.square().sum()]).double()
    distributed.all_reduce_([sums])
    # The statistics in float64 Python arithmetic (a dozen scalar tensor ops cost ~100 us), rounded
    # to the advantages' float32 where the tensor version casts.
    total, total_sq = sums.tolist()
    mean = total / count
    var = max((total_sq - count * mean * mean) / max(count - 1, 1), 0.0)
    std = np.float32(np.float32(math.sqrt(var)) + np.float32(1e-8))
    return (adv - float(np.float32(mean))) / float(std)


# ------------------------------------------------------------------------------------------ policy for eval
class Policy:
    """A trained PPO policy for evaluation and data collection (stateless: ``first`` is ignored)."""

    def __init__(
        self, agent: ActorCritic, prep: ObsNormalizer, obs_space: gym.Space, action_space: gym.Space,
        device: torch.device,
    ) -> None:  # fmt: skip
        self.agent, self.prep, self.device = agent, prep, device
        self.action_space = action_space
        self.obs_shape = tuple(obs_space.shape)

    @torch.no_grad()
    def act(self, obs: np.ndarray, first: np.ndarray, deterministic: bool = False) -> np.ndarray:
        action = self.agent.sample(self.prep(obs, self.device, update=False), deterministic=deterministic)[0]
        return to_env_action(action, self.action_space)

    @torch.no_grad()
    def inspect(self, obs: np.ndarray, first: np.ndarray, deterministic: bool = False) -> Inspection:
        x = self.prep(obs, self.device, update=False)
        action = self.agent.sample(x, deterministic=deterministic)[0]
        features, mode, entropy, value = self.agent.inspect(x)
        return Inspection(
            to_env_action(action, self.action_space), numpy32(features),
            None if entropy is None else numpy32(entropy), numpy32(value), numpy32(mode),
        )  # fmt: skip


def load_policy(run: Run, checkpoint: dict[str, Any], device: str = "cpu") -> Policy:
    """Rebuild the policy a checkpoint holds, with the spaces it stores (checkpoints written before
    they did: from a 1-env instance of the run's env)."""
    from rlkd.core.config import from_dict

    cfg = from_dict(PPOConfig, checkpoint["config"], f"{run.path}/config.yaml")
    state = checkpoint["state"]
    if "spaces" in state:
        obs_space, action_space = (space_from_data(state["spaces"][k]) for k in ("obs", "action"))
    else:
        envs = make_vec(cfg.env_id, 1, cfg.seed, cfg.env_backend, **cfg.env_kwargs)
        obs_space, action_space = envs.single_observation_space, envs.single_action_space
        envs.close()
    dev = torch.device(device)
    int_head = cfg.intrinsic != "none"
    agent = ActorCritic(obs_space, action_space, cfg.hidden_size, int_head, cfg.policy_net).to(dev)
    prep = ObsNormalizer(obs_space, cfg.norm_obs).to(dev)
    try:
        agent.load_state_dict(state["agent"])
        prep.load_state_dict(state["prep"])
    except (KeyError, RuntimeError) as exc:
        raise UserError(
            f"checkpoint of {run.path} does not match a PPO agent for {cfg.env_id}: {exc}"
        ) from None
    return Policy(agent.eval(), prep.eval(), obs_space, action_space, dev)
