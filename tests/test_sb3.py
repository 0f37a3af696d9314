"""The Stable-Baselines3 integration (rlkd.intrinsic.sb3): the vector-env adapter and intrinsic rewards."""

from __future__ import annotations

import gymnasium
import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter, Logger

from rlkd.intrinsic import make_intrinsic
from rlkd.intrinsic.sb3 import IntrinsicRewardVecEnv, VectorEnvToSB3, warmup_obs_stats, with_intrinsic


def _make_vec(env_id: str, num_envs: int = 4, **kwargs) -> gymnasium.vector.VectorEnv:
    return gymnasium.make_vec(
        env_id,
        num_envs,
        vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": gymnasium.vector.AutoresetMode.SAME_STEP},
        **kwargs,
    )


# ---- adapter -------------------------------------------------------------------------------------------


def test_adapter_rejects_next_step_autoreset() -> None:
    env = gymnasium.make_vec("CartPole-v1", 2, vectorization_mode="sync")  # NEXT_STEP by default
    with pytest.raises(ValueError, match=r"SAME_STEP autoreset.*NextStep|SAME_STEP autoreset.*NEXT_STEP"):
        VectorEnvToSB3(env)
    env.close()


def test_adapter_cartpole_terminal_obs_and_infos() -> None:
    venv = VectorEnvToSB3(gymnasium.wrappers.vector.RecordEpisodeStatistics(_make_vec("CartPole-v1")))
    assert venv.num_envs == 4
    assert venv.observation_space.shape == (4,) and isinstance(venv.action_space, gymnasium.spaces.Discrete)
    venv.seed(3)
    obs = venv.reset()
    assert isinstance(obs, np.ndarray) and obs.shape == (4, 4)  # reset returns obs only
    ended = 0
    for _ in range(200):
        obs, rewards, dones, infos = venv.step(np.ones(4, dtype=np.int64))  # always push right: falls fast
        assert rewards.dtype == np.float32 and dones.dtype == bool and len(infos) == 4
        for i in np.flatnonzero(dones):
            ended += 1
            term = infos[i]["terminal_observation"]
            assert term.shape == (4,)
            assert not np.allclose(term, obs[i])  # obs[i] is already the first obs of the next episode
            assert abs(obs[i]).max() <= 0.05  # CartPole resets within +-0.05
            assert infos[i]["TimeLimit.truncated"] is False  # pole fell: terminated, not truncated
            assert infos[i]["episode"]["l"] > 0  # SB3 reads episode stats from here
        for i in np.flatnonzero(~dones):
            assert "terminal_observation" not in infos[i]
    assert ended >= 10
    venv.close()


def test_adapter_reports_truncation_and_seeds_reproducibly() -> None:
    venv = VectorEnvToSB3(_make_vec("CartPole-v1", 2, max_episode_steps=5))
    venv.seed(7)
    first = venv.reset()
    for t in range(5):
        _, _, dones, infos = venv.step(np.array([0, 1]))
        assert dones.all() == (t == 4)
    assert all(info["TimeLimit.truncated"] is True for info in infos)
    venv.seed(7)
    np.testing.assert_array_equal(venv.reset(), first)
    assert venv.get_attr("render_mode") == [None, None]
    venv.close()


def test_adapter_box_actions_mountain_car_continuous() -> None:
    venv = VectorEnvToSB3(_make_vec("MountainCarContinuous-v0", 3))
    assert isinstance(venv.action_space, gymnasium.spaces.Box) and venv.action_space.shape == (1,)
    venv.reset()
    obs, rewards, _, _ = venv.step(np.full((3, 1), 0.5, dtype=np.float32))
    assert obs.shape == (3, 2)
    np.testing.assert_allclose(rewards, -0.1 * 0.5**2, rtol=1e-5)  # MountainCarContinuous action cost
    venv.close()


# ---- intrinsic rewards with SB3 PPO -------------------------------------------------------------------


class _CaptureWriter(KVWriter):
    """An SB3 logger output that keeps every dumped key/value."""

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = {}

    def write(self, key_values: dict, key_excluded: dict, step: int = 0) -> None:
        for key, value in key_values.items():
            self.values.setdefault(key, []).append(value)


class _CaptureRewards(BaseCallback):
    """Copies SB3's rollout-buffer rewards at the end of every rollout."""

    def __init__(self) -> None:
        super().__init__()
        self.rewards: list[np.ndarray] = []

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.rewards.append(self.model.rollout_buffer.rewards.copy())


@pytest.mark.parametrize("name", ["rnd", "rdd"])
def test_ppo_trains_with_bonus_in_rollout_buffer(name: str) -> None:
    torch.manual_seed(0)
    envs = gymnasium.wrappers.vector.RecordEpisodeStatistics(_make_vec("CartPole-v1", 4))
    venv, callback = with_intrinsic(envs, name, int_coef=0.5, n_epochs=2, batch_size=64)
    assert isinstance(venv, IntrinsicRewardVecEnv)
    warmup_obs_stats(venv, callback.module, num_steps=16, seed=0)
    assert callback.module.obs_rms.count.item() == pytest.approx(4 * 17, abs=1e-3)

    predictor_before = [p.clone() for p in callback.module.predictor.parameters()]
    target_before = [p.clone() for p in callback.module.target.parameters()]
    capture = _CaptureRewards()
    model = PPO("MlpPolicy", venv, n_steps=32, batch_size=64, n_epochs=2, seed=0, verbose=0)
    writer = _CaptureWriter()
    model.set_logger(Logger(folder=None, output_formats=[writer]))
    model.learn(total_timesteps=256, callback=[callback, capture])

    assert model.num_timesteps >= 256 and len(capture.rewards) == 2
    rewards = capture.rewards[-1]  # (n_steps, num_envs)
    # CartPole's extrinsic reward is always 1 (no truncation this early): the rest is 0.5 * scaled bonus > 0.
    bonus_part = rewards - 1.0
    assert (bonus_part > 0).all()
    assert bonus_part.std() > 0
    # The predictor trained (own optimizer), the target did not, obs stats kept growing.
    assert any(
        not torch.equal(a, b)
        for a, b in zip(predictor_before, callback.module.predictor.parameters(), strict=True)
    )
    assert all(
        torch.equal(a, b) for a, b in zip(target_before, callback.module.target.parameters(), strict=True)
    )
    assert callback.module.obs_rms.count.item() > 4 * 17 + 200
    # Logged through SB3's logger.
    logged = writer.values
    for key in ("intrinsic/reward_mean", "intrinsic/reward_std", "intrinsic/predictor_loss"):
        assert len(logged[key]) == 2 and np.isfinite(logged[key]).all()
    assert logged["intrinsic/reward_mean"][-1] == pytest.approx(2 * bonus_part.mean(), rel=1e-4)
    if name == "rdd":
        assert "intrinsic/pseudo_count" in logged
    venv.close()


def test_bonus_uses_the_next_episodes_first_observation_and_eval_mode_freezes_stats() -> None:
    torch.manual_seed(0)
    base = VectorEnvToSB3(_make_vec("CartPole-v1", 2))
    module = make_intrinsic("rnd", base.observation_space, 2)
    assert module is not None
    venv = IntrinsicRewardVecEnv(base, module, int_coef=1.0, ext_coef=0.0)
    venv.reset()
    for _ in range(100):
        obs, rewards, dones, infos = venv.step(np.ones(2, dtype=np.int64))
        if dones.any():
            break
    i = int(np.flatnonzero(dones)[0])
    # The RND reference's rule, as rlkd's PPO: the observation the stream continues from.
    first, terminal = obs[i], infos[i]["terminal_observation"]
    assert not np.array_equal(first, terminal)
    expected = module.reward_scaler.scale(module.bonus(torch.as_tensor(first)[None]))
    assert rewards[i] == pytest.approx(float(expected[0]), rel=1e-5)
    assert infos[i]["intrinsic_reward"] == pytest.approx(rewards[i], rel=1e-5)

    venv.training = False
    state = {k: v.clone() for k, v in module.state_dict().items()}
    buffered = len(venv._obs)
    for _ in range(5):
        venv.step(np.zeros(2, dtype=np.int64))
    assert len(venv._obs) == buffered
    for k, v in module.state_dict().items():
        assert torch.equal(v, state[k]), k
    venv.close()


def test_with_intrinsic_box_actions_and_bad_input() -> None:
    venv, callback = with_intrinsic(_make_vec("MountainCarContinuous-v0", 2), "rdd", rdd_sigma=0.5)
    assert callback.module.sigma == 0.5
    model = PPO("MlpPolicy", venv, n_steps=16, batch_size=32, n_epochs=1, seed=0)
    model.learn(total_timesteps=32, callback=callback)
    assert np.isfinite(model.rollout_buffer.rewards).all()
    venv.close()

    with pytest.raises(ValueError, match="unknown intrinsic module"):
        with_intrinsic(_make_vec("CartPole-v1", 2), "rmd")
    with pytest.raises(ValueError, match="built for 3 envs"):
        module = make_intrinsic("rnd", gymnasium.spaces.Box(-1, 1, (4,), np.float32), 3)
        IntrinsicRewardVecEnv(VectorEnvToSB3(_make_vec("CartPole-v1", 2)), module)


def test_callback_state_round_trip() -> None:
    _, callback = with_intrinsic(_make_vec("CartPole-v1", 2), "rnd")
    _, other = with_intrinsic(_make_vec("CartPole-v1", 2), "rnd")
    other.load_state_dict(callback.state_dict())
    obs = torch.randn(5, 4)
    assert torch.equal(other.module.bonus(obs), callback.module.bonus(obs))
