"""Use rlkd's intrinsic rewards (RND, RDD) and vector environments with Stable-Baselines3.

Two pieces:

- :class:`VectorEnvToSB3` adapts a Gymnasium 1.x ``VectorEnv`` with SAME_STEP autoreset (rlkd's vector
  contract) to SB3's ``VecEnv`` API;
- :func:`with_intrinsic` wraps an SB3 ``VecEnv`` so that every step's reward becomes
  ``ext_coef * extrinsic + int_coef * normalized bonus`` and returns a callback that, at the end of each
  rollout, updates the observation statistics, trains the predictor with its own Adam optimizer and logs
  ``intrinsic/reward_mean``, ``intrinsic/reward_std``, ``intrinsic/predictor_loss`` (plus the module's
  :meth:`~rlkd.intrinsic.IntrinsicModule.metrics`) through SB3's logger.

Usage::

    import gymnasium as gym
    from stable_baselines3 import PPO
    from rlkd.intrinsic.sb3 import VectorEnvToSB3, warmup_obs_stats, with_intrinsic

    envs = gym.make_vec("MountainCar-v0", 8, vectorization_mode="sync",
                        vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})
    envs = gym.wrappers.vector.RecordEpisodeStatistics(envs)   # SB3's ep_rew_mean stays extrinsic
    venv, callback = with_intrinsic(VectorEnvToSB3(envs), "rnd", int_coef=1.0)
    warmup_obs_stats(venv, callback.module, num_steps=256)      # RND: init obs stats with a random agent
    PPO("MlpPolicy", venv, n_steps=128).learn(100_000, callback=callback)

Deviation from the RND paper: SB3's PPO has a single value head and one discount, so the scaled bonus is
*mixed into the reward* and its return is cut at episode ends like the extrinsic one. The paper (section
2.3) fits two value heads, with a non-episodic intrinsic return and its own discount; rlkd's own PPO
(``rlkd.agents.ppo``) does that. Expect the SB3 route to explore somewhat less on hard-exploration games.
The bonus for a step is computed on the observation the env returns: where an episode ended, the next
episode's first one (the RND reference code's rule, and rlkd's PPO's). Scoring the terminal observation
instead would pay the agent for ending episodes in novel states.

Checkpoints: ``model.save`` does not know about the module; save ``callback.state_dict()`` next to it
and restore with ``callback.load_state_dict(...)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import gymnasium
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from stable_baselines3.common.vec_env.base_vec_env import VecEnvIndices, VecEnvObs, VecEnvStepReturn

from rlkd.intrinsic import IntrinsicModule, make_intrinsic

__all__ = [
    "IntrinsicCallback",
    "IntrinsicRewardVecEnv",
    "VectorEnvToSB3",
    "warmup_obs_stats",
    "with_intrinsic",
]


# --------------------------------------------------------------------------------------------------------
# Gymnasium VectorEnv -> SB3 VecEnv
# --------------------------------------------------------------------------------------------------------


def _split_info(info: dict[str, Any], num_envs: int, skip: Sequence[str] = ()) -> list[dict[str, Any]]:
    """Gymnasium's dict of arrays with ``_key`` masks -> SB3's list of per-env dicts (nested dicts too)."""
    out: list[dict[str, Any]] = [{} for _ in range(num_envs)]
    for key, value in info.items():
        if key.startswith("_") or key in skip:
            continue
        mask = info.get(f"_{key}")
        mask = np.ones(num_envs, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        per_env = _split_info(value, num_envs) if isinstance(value, dict) else None
        for i in np.flatnonzero(mask):
            if per_env is not None:
                out[i][key] = per_env[i]
            else:
                item = value[i]
                out[i][key] = item.item() if isinstance(item, np.generic) else item
    return out


class VectorEnvToSB3(VecEnv):
    """SB3 ``VecEnv`` view of a Gymnasium 1.x ``VectorEnv`` that autoresets in the same step.

    SAME_STEP autoreset returns the first observation of the new episode in the step that ended the old
    one, with the last observation in ``info["final_obs"]`` (mask ``info["_final_obs"]``) and the last
    step's info in ``info["final_info"]``. That is exactly SB3's convention, so the adapter only reshapes:
    ``terminal_observation`` and ``TimeLimit.truncated`` (truncated and not terminated, so SB3 bootstraps)
    go into the per-env info dicts, and ``reset()`` returns observations only.

    Seeding follows SB3: ``seed(s)`` gives env ``i`` the seed ``s + i`` at the next ``reset()``.

    Args:
        env: A Gymnasium vector env whose ``metadata["autoreset_mode"]`` is ``AutoresetMode.SAME_STEP``.

    Raises:
        ValueError: If the env uses another autoreset mode (or declares none).
    """

    def __init__(self, env: gymnasium.vector.VectorEnv) -> None:
        mode = env.metadata.get("autoreset_mode")
        try:
            mode = AutoresetMode(mode) if mode is not None else None
        except ValueError:
            mode = None
        if mode is not AutoresetMode.SAME_STEP:
            raise ValueError(
                f"VectorEnvToSB3 needs a vector env with SAME_STEP autoreset, but {env!r} declares "
                f"metadata['autoreset_mode']={env.metadata.get('autoreset_mode')!r}. Create it with "
                "gymnasium.make_vec(..., vector_kwargs={'autoreset_mode': "
                "gymnasium.vector.AutoresetMode.SAME_STEP}) or rlkd.envs.make_vec (SAME_STEP by contract)."
            )
        self.env = env
        self._actions: np.ndarray | None = None
        super().__init__(env.num_envs, env.single_observation_space, env.single_action_space)

    # ---- core API -----------------------------------------------------------------------------------

    def reset(self) -> VecEnvObs:
        """Reset all envs with the seeds/options set by ``seed()``/``set_options()``; return observations."""
        seed: int | list[int | None] | None = None
        if any(s is not None for s in self._seeds):
            first = self._seeds[0]
            consecutive = first is not None and self._seeds == [first + i for i in range(self.num_envs)]
            # An int seed means "env i gets seed + i" in Gymnasium as in SB3, and every vector env takes it.
            seed = first if consecutive else list(self._seeds)
        options = None
        if any(self._options):
            if any(opt != self._options[0] for opt in self._options):
                raise ValueError(
                    "Gymnasium vector envs take one options dict for all envs; got different ones"
                )
            options = self._options[0]
        obs, info = self.env.reset(seed=seed, options=options)
        self._reset_seeds()
        self._reset_options()
        self.reset_infos = _split_info(info, self.num_envs)
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = actions

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() called without step_async()")
        obs, rewards, terminated, truncated, info = self.env.step(self._actions)
        self._actions = None
        terminated = np.asarray(terminated, dtype=bool)
        truncated = np.asarray(truncated, dtype=bool)
        dones = terminated | truncated
        infos = _split_info(info, self.num_envs, skip=("final_obs", "final_info"))
        if dones.any():
            if "final_obs" not in info:
                raise RuntimeError(
                    "an episode ended but info has no 'final_obs': the env declares SAME_STEP autoreset "
                    "but does not follow it"
                )
            final_obs, final_mask = info["final_obs"], np.asarray(info["_final_obs"], dtype=bool)
            final_infos = _split_info(info.get("final_info", {}), self.num_envs)
            for i in np.flatnonzero(dones):
                if not final_mask[i]:
                    raise RuntimeError(f"env {i} ended an episode but info['_final_obs'][{i}] is False")
                # The top-level info of a reset env is the reset info; the last step's own info is final_info.
                self.reset_infos[i] = dict(infos[i])
                infos[i].update(final_infos[i])
                infos[i]["terminal_observation"] = np.asarray(final_obs[i])
                infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
        return obs, np.asarray(rewards, dtype=np.float32), dones, infos

    def close(self) -> None:
        self.env.close()

    # ---- attribute access ---------------------------------------------------------------------------

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        idx = list(self._get_indices(indices))
        if attr_name == "render_mode":
            return [self.env.render_mode for _ in idx]
        if hasattr(self.env, "get_attr"):
            try:
                values = self.env.get_attr(attr_name)
                return [values[i] for i in idx]
            except AttributeError:
                pass
        if hasattr(self.env, attr_name):
            return [getattr(self.env, attr_name) for _ in idx]
        raise AttributeError(f"{type(self.env).__name__} has no attribute {attr_name!r}")

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        if not hasattr(self.env, "set_attr"):
            raise AttributeError(f"{type(self.env).__name__} does not support set_attr")
        idx = list(self._get_indices(indices))
        if len(idx) == self.num_envs:
            self.env.set_attr(attr_name, [value] * self.num_envs)
            return
        values = list(self.env.get_attr(attr_name))
        for i in idx:
            values[i] = value
        self.env.set_attr(attr_name, values)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        idx = list(self._get_indices(indices))
        if not hasattr(self.env, "call"):
            raise AttributeError(f"{type(self.env).__name__} does not support calling sub-env methods")
        if len(idx) != self.num_envs:
            raise NotImplementedError(
                "Gymnasium vector envs call a method on all sub-envs; pass indices=None"
            )
        return list(self.env.call(method_name, *method_args, **method_kwargs))

    def env_is_wrapped(
        self, wrapper_class: type[gymnasium.Wrapper], indices: VecEnvIndices = None
    ) -> list[bool]:
        idx = list(self._get_indices(indices))
        sub_envs = getattr(self.env, "envs", None)  # SyncVectorEnv keeps its sub-envs; others do not
        if sub_envs is None:
            return [False for _ in idx]
        out = []
        for i in idx:
            env, found = sub_envs[i], False
            while isinstance(env, gymnasium.Wrapper):
                found = found or isinstance(env, wrapper_class)
                env = env.env
            out.append(found)
        return out

    def get_images(self) -> Sequence[np.ndarray | None]:
        if self.env.render_mode != "rgb_array":
            return [None for _ in range(self.num_envs)]
        frames = self.env.render()
        return [None for _ in range(self.num_envs)] if frames is None else list(frames)


# --------------------------------------------------------------------------------------------------------
# Intrinsic rewards
# --------------------------------------------------------------------------------------------------------


class IntrinsicRewardVecEnv(VecEnvWrapper):
    """Adds ``int_coef * normalized bonus`` to every step's reward and remembers the rollout's next obs.

    Put it directly around the adapter (inside ``VecNormalize``, if any), so the module sees raw
    observations and raw extrinsic rewards. The per-env ``info`` gets ``extrinsic_reward`` and
    ``intrinsic_reward`` (the scaled bonus).

    Reward scaling runs step by step: each step's ``(1, N)`` raw bonuses go through
    ``module.normalize_rewards``, which continues each env's non-episodic discounted return and its
    running variance. SB3 stores the reward in its rollout buffer at once, so the scale for step ``t`` uses
    statistics up to ``t`` instead of the whole rollout (as rlkd's own PPO does); the return is the same.

    Args:
        venv: The SB3 vector env to wrap.
        module: The intrinsic-reward module (its ``num_envs`` must match ``venv``).
        int_coef: Weight of the normalized bonus (RND paper: 1).
        ext_coef: Weight of the extrinsic reward (RND paper: 2 with two value heads; 1 keeps SB3's scale).
        max_buffer_steps: Most steps of next observations kept for predictor training; older ones are
            dropped (guards memory when no :class:`IntrinsicCallback` drains the buffer).

    Attributes:
        training: When False (evaluation), no statistics are updated and no observations are buffered.
    """

    def __init__(
        self,
        venv: VecEnv,
        module: IntrinsicModule,
        *,
        int_coef: float = 1.0,
        ext_coef: float = 1.0,
        max_buffer_steps: int = 4096,
    ) -> None:
        super().__init__(venv)
        n_scaler = module.reward_scaler.returns.shape[0]
        if n_scaler != venv.num_envs:
            raise ValueError(f"module was built for {n_scaler} envs but the vec env has {venv.num_envs}")
        self.module = module
        self.int_coef = float(int_coef)
        self.ext_coef = float(ext_coef)
        self.max_buffer_steps = int(max_buffer_steps)
        self.training = True
        self._obs: list[np.ndarray] = []  # each (N, *obs_shape)
        self._raw: list[np.ndarray] = []  # each (N,)
        self._scaled: list[np.ndarray] = []  # each (N,)

    def reset(self) -> VecEnvObs:
        return self.venv.reset()

    def step_wait(self) -> VecEnvStepReturn:
        obs, rewards, dones, infos = self.venv.step_wait()
        next_obs = np.array(obs, copy=True)  # (N, *obs_shape): the next episode's first where done
        device = self.module.device
        raw = self.module.bonus(torch.as_tensor(next_obs, device=device))  # (N,)
        if self.training:
            scaled = self.module.normalize_rewards(raw[None])[0]
        else:
            scaled = self.module.reward_scaler.scale(raw)
        raw_np = raw.double().cpu().numpy()
        scaled_np = scaled.double().cpu().numpy()
        if self.training:
            self._obs.append(next_obs)
            self._raw.append(raw_np)
            self._scaled.append(scaled_np)
            if len(self._obs) > self.max_buffer_steps:
                del self._obs[0], self._raw[0], self._scaled[0]
        for i, info in enumerate(infos):
            info["extrinsic_reward"] = float(rewards[i])
            info["intrinsic_reward"] = float(scaled_np[i])
        mixed = self.ext_coef * np.asarray(rewards, dtype=np.float64) + self.int_coef * scaled_np
        return obs, mixed.astype(np.float32), dones, infos

    def pop_rollout(self) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Return and clear the buffered ``(next_obs (T*N, *obs), raw (T, N), scaled (T, N))``."""
        if not self._obs:
            return None
        obs = np.concatenate(self._obs, axis=0)
        raw, scaled = np.stack(self._raw), np.stack(self._scaled)
        self._obs, self._raw, self._scaled = [], [], []
        return obs, raw, scaled


class IntrinsicCallback(BaseCallback):
    """Trains the predictor at the end of each SB3 rollout and logs ``intrinsic/*``.

    At rollout end, as in the RND reference: fold the rollout's next observations into the observation
    statistics, then run ``n_epochs`` passes of shuffled minibatches of ``module.loss`` (which itself trains
    on a random ``update_proportion`` of each minibatch) with a dedicated Adam optimizer.

    Args:
        wrapper: The :class:`IntrinsicRewardVecEnv` the model trains on.
        learning_rate: Adam step size (RND paper: 1e-4; RDD uses 3e-4 on vector tasks).
        n_epochs: Passes over the rollout per update (RND paper: 4).
        batch_size: Minibatch size.
        max_grad_norm: Gradient-norm clip; ``None`` disables it.
        verbose: SB3 verbosity.
    """

    def __init__(
        self,
        wrapper: IntrinsicRewardVecEnv,
        *,
        learning_rate: float = 1e-4,
        n_epochs: int = 4,
        batch_size: int = 256,
        max_grad_norm: float | None = 0.5,
        verbose: int = 0,
    ) -> None:
        super().__init__(verbose)
        self.wrapper = wrapper
        self.module = wrapper.module
        self.n_epochs = int(n_epochs)
        self.batch_size = int(batch_size)
        self.max_grad_norm = max_grad_norm
        self.optimizer = torch.optim.Adam(self.module.predictor.parameters(), lr=learning_rate)

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        rollout = self.wrapper.pop_rollout()
        if rollout is None:
            return
        obs_np, raw, scaled = rollout
        obs = torch.as_tensor(obs_np, device=self.module.device)  # (T*N, *obs_shape)
        self.module.update_obs_stats(obs)
        self.module.train()
        losses = []
        for _ in range(self.n_epochs):
            order = torch.randperm(obs.shape[0], device=obs.device)
            for start in range(0, obs.shape[0], self.batch_size):
                loss = self.module.loss(obs[order[start : start + self.batch_size]])["predictor"]
                self.optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if self.max_grad_norm is not None:
                    torch.nn.utils.clip_grad_norm_(self.module.predictor.parameters(), self.max_grad_norm)
                self.optimizer.step()
                losses.append(float(loss.detach()))
        self.logger.record("intrinsic/reward_mean", float(scaled.mean()))
        self.logger.record("intrinsic/reward_std", float(scaled.std()))
        self.logger.record("intrinsic/raw_bonus_mean", float(raw.mean()))
        self.logger.record("intrinsic/predictor_loss", float(np.mean(losses)))
        for key, value in self.module.metrics().items():
            self.logger.record(f"intrinsic/{key}", value)

    def state_dict(self) -> dict[str, Any]:
        """Module (weights and statistics) and optimizer state, for saving next to ``model.save``."""
        return {"module": self.module.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.module.load_state_dict(state["module"])
        self.optimizer.load_state_dict(state["optimizer"])


def with_intrinsic(
    venv: VecEnv | gymnasium.vector.VectorEnv,
    module: IntrinsicModule | str,
    int_coef: float = 1.0,
    *,
    ext_coef: float = 1.0,
    learning_rate: float = 1e-4,
    n_epochs: int = 4,
    batch_size: int = 256,
    **module_kwargs: Any,
) -> tuple[IntrinsicRewardVecEnv, IntrinsicCallback]:
    """Wrap ``venv`` with an intrinsic reward and return the env for SB3 and the callback for ``learn``.

    Args:
        venv: An SB3 ``VecEnv``, or a Gymnasium SAME_STEP ``VectorEnv`` (adapted with
            :class:`VectorEnvToSB3`).
        module: An :class:`~rlkd.intrinsic.IntrinsicModule`, or a name (``"rnd"``/``"rdd"``) built with
            :func:`~rlkd.intrinsic.make_intrinsic` for ``venv``'s observation space and env count.
        int_coef: Weight of the normalized bonus in the reward.
        ext_coef: Weight of the extrinsic reward.
        learning_rate: Predictor Adam step size.
        n_epochs: Predictor passes over each rollout.
        batch_size: Predictor minibatch size.
        **module_kwargs: Passed to :func:`~rlkd.intrinsic.make_intrinsic` when ``module`` is a name.

    Returns:
        ``(wrapped_venv, callback)``: pass the first to the SB3 model and the second to ``learn``.
    """
    if isinstance(venv, gymnasium.vector.VectorEnv):
        venv = VectorEnvToSB3(venv)
    if isinstance(module, str):
        if module == "none":
            raise ValueError("with_intrinsic needs a module: 'rnd' or 'rdd' (use the plain env for 'none')")
        built = make_intrinsic(module, venv.observation_space, venv.num_envs, **module_kwargs)
        assert built is not None
        module = built
    elif module_kwargs:
        raise TypeError(f"module options {sorted(module_kwargs)} apply only when module is given by name")
    wrapper = IntrinsicRewardVecEnv(venv, module, int_coef=int_coef, ext_coef=ext_coef)
    callback = IntrinsicCallback(
        wrapper, learning_rate=learning_rate, n_epochs=n_epochs, batch_size=batch_size
    )
    return wrapper, callback


def warmup_obs_stats(venv: VecEnv, module: IntrinsicModule, num_steps: int, seed: int | None = None) -> None:
    """Step ``venv`` with uniformly random actions and fold the observations into ``module.obs_rms``.

    The RND paper (section 2.4) initializes observation normalization this way before training. This
    steps the env, so call it before ``model.learn`` (which resets the env afterwards).

    Args:
        venv: The SB3 vector env (wrapped or not).
        module: The module whose ``init_obs_stats`` receives the observations.
        num_steps: Vector steps to take (``num_steps * num_envs`` observations).
        seed: Seed of the action sampler (and of the env reset when given).
    """
    action_space = venv.action_space
    action_space.seed(seed)
    if seed is not None:
        venv.seed(seed)
    base = venv
    # Step the innermost env so the warm-up neither updates reward statistics nor fills training buffers.
    while isinstance(base, IntrinsicRewardVecEnv):
        base = base.venv
    obs = base.reset()
    batch = [obs]
    for _ in range(num_steps):
        actions = np.stack([action_space.sample() for _ in range(base.num_envs)])
        obs, _, _, _ = base.step(actions)
        batch.append(obs)
    module.init_obs_stats(torch.as_tensor(np.concatenate(batch, axis=0), device=module.device))
