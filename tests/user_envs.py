"""A user-defined Gymnasium env, registered in tests the way README tells users to."""

from __future__ import annotations

import gymnasium as gym
import numpy as np


class Corridor(gym.Env):
    """Walk right along a corridor of ``length`` cells; reaching the end gives +1 and terminates."""

    def __init__(self, length: int = 5) -> None:
        self.length = length
        self.observation_space = gym.spaces.Box(0.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Discrete(2)
        self.pos = 0

    def _obs(self) -> np.ndarray:
        return np.array([self.pos / self.length, 1.0], dtype=np.float32)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        self.pos = 0
        return self._obs(), {}

    def step(self, action):
        self.pos = max(0, self.pos + (1 if int(action) == 1 else -1))
        done = self.pos >= self.length
        return self._obs(), float(done), done, False, {"is_success": done}


# Importing this module registers the env, so `--env tests.user_envs:Corridor-v0` works.
if "Corridor-v0" not in gym.registry:
    gym.register("Corridor-v0", entry_point=Corridor, max_episode_steps=50)


class Endless(gym.Env):
    """Reward 1 every step from one constant observation; never terminates, only time limits cut it.

    With truncation bootstrapping the value of its observation is ``1 / (1 - gamma)``; treating the
    time limit as a terminal state instead gives at most ``(1 - gamma**limit) / (1 - gamma)``.
    """

    def __init__(self) -> None:
        self.observation_space = gym.spaces.Box(0.0, 1.0, (1,), np.float32)
        self.action_space = gym.spaces.Discrete(2)

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.ones(1, np.float32), {}

    def step(self, action):
        return np.ones(1, np.float32), 1.0, False, False, {}


if "Endless-v0" not in gym.registry:
    gym.register("Endless-v0", entry_point=Endless, max_episode_steps=5)


class Faulty(gym.Env):
    """A continuing 1-d env that misbehaves at ``fault_step``: ``fault`` is ``nan_obs``,
    ``inf_reward`` or ``huge_reward`` (a finite 3e38, whose square overflows a float32 value loss),
    or, from its first observation on, ``nan_reset``, or ``nan_final`` (an episode that ends on a NaN
    observation: the vector env returns the next episode's finite first one)."""

    def __init__(self, fault: str = "nan_obs", fault_step: int = 20, continuous: bool = False) -> None:
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        box = gym.spaces.Box(-1.0, 1.0, (1,), np.float32)
        self.action_space = box if continuous else gym.spaces.Discrete(2)
        self.fault, self.fault_step, self.t = fault, fault_step, 0

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        return np.full(1, np.nan if self.fault == "nan_reset" else 0.0, np.float32), {}

    def step(self, action):
        self.t += 1
        obs, reward = np.full(1, 0.5 * float(np.asarray(action).reshape(-1)[0] > 0), np.float32), 0.0
        if self.t == self.fault_step:
            if self.fault == "nan_final":
                obs[0] = np.nan
                return obs, reward, True, False, {}
            if self.fault == "nan_obs":
                obs[0] = np.nan
            elif self.fault == "inf_reward":
                reward = float("inf")
            else:
                reward = 3e38
        return obs, reward, False, False, {}


if "Faulty-v0" not in gym.registry:
    gym.register("Faulty-v0", entry_point=Faulty, max_episode_steps=10_000)
