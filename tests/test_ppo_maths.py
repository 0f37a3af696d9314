"""PPO+RND's advantage maths on a hand example, without the CLI or an env.

One env, four steps, gamma = gamma_int = 0.5, lambda = 1 (so each return is a plain discounted sum):
step 1 is cut by a time limit (bootstrapped with the value of the observation it cut off), step 2
terminates. The extrinsic return must stop at the termination and bootstrap the truncation; the
intrinsic return must run through both (non-episodic); the policy's advantage is
``ext_coef * A_ext + int_coef * A_int``.
"""

from __future__ import annotations

import copy

import gymnasium as gym
import numpy as np
import pytest
import torch
from rlkd.agents.ppo import PPO, PPOConfig

GAMMA = 0.5


@pytest.fixture
def rollout() -> tuple[PPO, dict[str, torch.Tensor]]:
    torch.manual_seed(0)
    cfg = PPOConfig(intrinsic="rnd", num_envs=1, num_steps=4, gamma=GAMMA, gamma_int=GAMMA, gae_lambda=1.0,
                    ext_coef=2.0, int_coef=1.0, num_minibatches=1, total_steps=4)  # fmt: skip
    algo = PPO(cfg, gym.spaces.Box(-1.0, 1.0, (3,), np.float32), gym.spaces.Discrete(2))
    col = lambda *v: torch.tensor(v, dtype=torch.float32)[:, None]  # noqa: E731  (T,) -> (T, N=1)
    rewards, terminated, ended, boot_ext = algo.buffer.step_scalars  # (T, N) numpy views
    rewards[:] = col(1.0, 2.0, 3.0, 4.0)
    algo.buffer.v_ext[:] = col(0.5, 0.5, 0.5, 0.5)
    algo.buffer.v_int[:] = col(0.1, 0.2, 0.3, 0.4)
    ended[:] = col(0.0, 1.0, 1.0, 0.0)
    terminated[:] = col(0.0, 0.0, 1.0, 0.0)
    boot_ext[:] = col(0.0, 10.0, 0.0, 0.0)  # V(final obs) of the truncated step
    algo.buffer.next_obs[:] = torch.randn(4, 1, 3)
    last_obs = np.random.default_rng(0).normal(size=(1, 3)).astype(np.float32)
    last_ext, last_int = algo.agent.values(torch.as_tensor(last_obs))
    return algo, {"last_ext": last_ext.detach()[0], "last_int": last_int.detach()[0], "obs": last_obs}


def test_extrinsic_return_bootstraps_truncation_and_stops_at_termination(rollout) -> None:
    algo, last = rollout
    _, ret_ext, _, _ = algo.advantages(last["obs"], step=4)
    ret1 = 2.0 + GAMMA * 10.0  # truncated: bootstrapped with V(final obs), not the next episode's value
    expected = [1.0 + GAMMA * ret1, ret1, 3.0, 4.0 + GAMMA * float(last["last_ext"])]  # step 2 terminal
    assert ret_ext[:, 0].tolist() == pytest.approx(expected, rel=1e-6)


def test_intrinsic_return_ignores_episode_ends_and_advantages_mix(rollout) -> None:
    algo, last = rollout
    # The scaled bonuses the rollout will see: the same module, in the same state, scored apart.
    twin = copy.deepcopy(algo.intrinsic)
    stream = twin.rollout(algo.buffer.next_obs, algo.buffer.v_int, last["last_int"][None], 1.0)
    r_int = stream.rewards[:, 0].tolist()
    adv, ret_ext, ret_int, logs = algo.advantages(last["obs"], step=4)
    expected, g = [], float(last["last_int"])
    for r in reversed(r_int):  # no cut at steps 1 and 2
        g = r + GAMMA * g
        expected.insert(0, g)
    assert ret_int[:, 0].tolist() == pytest.approx(expected, rel=1e-5)
    mixed = 2.0 * (ret_ext - algo.buffer.v_ext) + 1.0 * (ret_int - algo.buffer.v_int)
    assert torch.allclose(adv, mixed, atol=1e-6)
    assert logs["intrinsic/reward_mean"] == pytest.approx(float(np.mean(r_int)), rel=1e-5)


@pytest.mark.parametrize("discrete", [True, False])
def test_policy_distribution_matches_torch_distributions(discrete: bool) -> None:
    """The written-out categorical and Gaussian (sample, evaluate) against torch.distributions."""
    from rlkd.agents.ppo_networks import ActorCritic
    from torch.distributions import Categorical, Normal

    torch.manual_seed(0)
    space = gym.spaces.Discrete(3) if discrete else gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    agent = ActorCritic(gym.spaces.Box(-1.0, 1.0, (4,), np.float32), space, 16, int_head=False)
    with torch.no_grad():  # a policy far from uniform, so that errors would show
        agent.actor.weight.mul_(300.0)
        if not discrete:
            agent.actor_logstd.copy_(torch.tensor([[-1.5, 0.7]]))
    x = torch.randn(64, 4)
    out = agent.actor(agent.actor_body(x))
    dist = Categorical(logits=out) if discrete else Normal(out, agent.actor_logstd.expand_as(out).exp())
    torch.manual_seed(5)
    ref_action = dist.sample()
    torch.manual_seed(5)
    with torch.no_grad():
        action, logp, v_ext, v_int = agent.sample(x)
    assert torch.equal(action, ref_action)  # the same draw from the same random numbers
    ref_logp = dist.log_prob(action) if discrete else dist.log_prob(action).sum(-1)
    torch.testing.assert_close(logp, ref_logp)
    new_logp, entropy, new_ext, _ = agent.evaluate(x, action)
    ref_ent = dist.entropy() if discrete else dist.entropy().sum(-1)
    torch.testing.assert_close(new_logp, ref_logp)
    torch.testing.assert_close(entropy, ref_ent)
    torch.testing.assert_close(new_ext, agent.critic_ext(agent.critic_body(x)).squeeze(-1))
    assert torch.equal(v_int, torch.zeros(64)) and torch.equal(v_ext, new_ext.detach())
    # Gradients reach the log-std through log-prob and entropy as through torch's formulas.
    if not discrete:
        (new_logp.sum() + entropy.sum()).backward()
        ours = agent.actor_logstd.grad.clone()
        agent.zero_grad()
        (dist.log_prob(action).sum() + dist.entropy().sum()).backward()
        torch.testing.assert_close(ours, agent.actor_logstd.grad)
    deterministic = agent.sample(x, deterministic=True)[0]
    assert torch.equal(deterministic, out.argmax(-1) if discrete else out)


def test_larger_has_torch_max_values_and_clipped_objective_gradients() -> None:
    """``larger`` (a select) in place of ``torch.max`` in PPO's clipped surrogate: the same loss and
    the same gradient with respect to the log-ratio, ties inside the clip range included."""
    from rlkd.agents.ppo import larger

    g = torch.Generator().manual_seed(0)
    logratio = torch.cat([torch.randn(60, generator=g) * 0.3, torch.zeros(4)]).requires_grad_(True)
    neg_adv = -torch.randn(64, generator=g)
    grads = []
    for pick in (torch.max, larger):
        ratio = logratio.exp()
        loss = pick(neg_adv * ratio, neg_adv * ratio.clamp(0.8, 1.2)).sum()
        grads.append((loss.detach(), torch.autograd.grad(loss, logratio)[0]))
    assert torch.equal(grads[0][0], grads[1][0]) and torch.equal(grads[0][1], grads[1][1])
    assert (grads[1][1] == 0).any() and (grads[1][1] != 0).any()  # both clipped and free samples


@pytest.mark.parametrize("discrete", [True, False])
def test_learn_makes_cleanrls_update(discrete: bool) -> None:
    """One epoch, one minibatch of ``PPO.learn`` against CleanRL's ppo.py loss written out plainly
    (normalised advantages, clipped surrogate, 1/2 clipped value loss, entropy bonus) followed by
    torch's Adam (eps 1e-5) after clipping the gradient norm: the same losses and the same weights."""
    from rlkd.core.guard import UpdateGuard

    torch.manual_seed(1)
    T, N, clip, ent_coef, vf_coef, lr = 8, 4, 0.2, 0.01, 0.5, 1e-2
    cfg = PPOConfig(num_envs=N, num_steps=T, num_minibatches=1, update_epochs=1, hidden_size=8,
                    clip_coef=clip, ent_coef=ent_coef, vf_coef=vf_coef, learning_rate=lr, max_grad_norm=0.5,
                    total_steps=T * N, intrinsic="none")  # fmt: skip
    space = gym.spaces.Discrete(3) if discrete else gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
    algo = PPO(cfg, gym.spaces.Box(-5.0, 5.0, (4,), np.float32), space)
    obs = torch.randn(T, N, 4)
    actions = torch.randint(3, (T, N)) if discrete else torch.randn(T, N, 2)
    with torch.no_grad():
        logp, _, value, _ = algo.agent.evaluate(obs.reshape(T * N, 4), actions.reshape(T * N, *space.shape))
    algo.buffer.obs[:], algo.buffer.actions[:] = obs, actions
    # Old log-probs off the current ones: ratios on both sides of the clip.
    algo.buffer.logprobs[:] = (logp + 0.5 * torch.randn(T * N)).reshape(T, N)
    algo.buffer.v_ext[:] = (value + 0.5 * torch.randn(T * N)).reshape(T, N)
    adv, ret = torch.randn(T, N), torch.randn(T, N)
    reference = copy.deepcopy(algo.agent)
    logs = algo.learn(adv, ret, torch.zeros(T, N), UpdateGuard())

    flat_obs, flat_actions = obs.reshape(T * N, 4), actions.reshape(T * N, *space.shape)
    new_logp, entropy, new_v, _ = reference.evaluate(flat_obs, flat_actions)
    b_adv, b_ret, b_old_v = adv.reshape(-1), ret.reshape(-1), algo.buffer.v_ext.reshape(-1)
    ratio = (new_logp - algo.buffer.logprobs.reshape(-1)).exp()
    mb_adv = (b_adv - b_adv.mean()) / (b_adv.std() + 1e-8)
    pg_loss = torch.max(-mb_adv * ratio, -mb_adv * torch.clamp(ratio, 1 - clip, 1 + clip)).mean()
    v_clipped = b_old_v + torch.clamp(new_v - b_old_v, -clip, clip)
    v_loss = 0.5 * torch.max((new_v - b_ret) ** 2, (v_clipped - b_ret) ** 2).mean()
    loss = pg_loss - ent_coef * entropy.mean() + v_loss * vf_coef
    optimizer = torch.optim.Adam(reference.parameters(), lr=lr, eps=1e-5)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.5)
    optimizer.step()

    assert logs["losses/policy_loss"] == pytest.approx(pg_loss.item(), rel=1e-5, abs=1e-7)
    assert logs["losses/value_loss"] == pytest.approx(v_loss.item(), rel=1e-5)
    assert logs["losses/entropy"] == pytest.approx(entropy.mean().item(), rel=1e-5)
    assert 0 < logs["losses/clipfrac"] < 1
    for (name, ours), theirs in zip(algo.agent.named_parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5, msg=name)


def test_learn_with_the_intrinsic_head_makes_cleanrls_rnd_update() -> None:
    """As above with RND: the intrinsic value head's unclipped 1/2 squared error joins the value
    loss, the predictor's distillation loss is added (CleanRL's ppo_rnd_envpool.py), and the policy
    and the predictor are clipped separately (rlkd's documented departure, ``step_optimizer``)."""
    from rlkd.core.guard import UpdateGuard

    torch.manual_seed(2)
    T, N, clip, ent_coef, vf_coef, lr = 8, 4, 0.2, 0.01, 0.5, 1e-2
    cfg = PPOConfig(num_envs=N, num_steps=T, num_minibatches=1, update_epochs=1, hidden_size=8,
                    clip_coef=clip, ent_coef=ent_coef, vf_coef=vf_coef, learning_rate=lr, max_grad_norm=0.5,
                    total_steps=T * N, intrinsic="rnd", seed=7)  # fmt: skip
    algo = PPO(cfg, gym.spaces.Box(-5.0, 5.0, (4,), np.float32), gym.spaces.Discrete(3))
    buf = algo.buffer
    obs, next_obs, actions = torch.randn(T, N, 4), torch.randn(T, N, 4), torch.randint(3, (T, N))
    algo.intrinsic.init_obs_stats(next_obs.reshape(-1, 4))
    with torch.no_grad():
        logp, _, v_ext, v_int = algo.agent.evaluate(obs.reshape(-1, 4), actions.reshape(-1))
    buf.obs[:], buf.next_obs[:], buf.actions[:] = obs, next_obs, actions
    buf.logprobs[:] = (logp + 0.5 * torch.randn(T * N)).reshape(T, N)
    buf.v_ext[:], buf.v_int[:] = (v_ext + torch.randn(T * N)).reshape(T, N), v_int.reshape(T, N)
    adv, ret_ext, ret_int = torch.randn(T, N), torch.randn(T, N), torch.randn(T, N)
    agent, rnd = copy.deepcopy(algo.agent), copy.deepcopy(algo.intrinsic)
    rng = torch.get_rng_state()  # the predictor's Bernoulli mask draws from it
    logs = algo.learn(adv, ret_ext, ret_int, UpdateGuard())

    rows = torch.randperm(T * N, generator=torch.Generator().manual_seed(7))  # learn's one minibatch
    new_logp, entropy, new_ext, new_int = agent.evaluate(obs.reshape(-1, 4)[rows], actions.reshape(-1)[rows])
    old_v = buf.v_ext.reshape(-1)[rows]
    ratio = (new_logp - buf.logprobs.reshape(-1)[rows]).exp()
    mb_adv = adv.reshape(-1)[rows]
    mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
    pg_loss = torch.max(-mb_adv * ratio, -mb_adv * torch.clamp(ratio, 1 - clip, 1 + clip)).mean()
    mb_ret = ret_ext.reshape(-1)[rows]
    v_clipped = old_v + torch.clamp(new_ext - old_v, -clip, clip)
    ext_v_loss = 0.5 * torch.max((new_ext - mb_ret) ** 2, (v_clipped - mb_ret) ** 2).mean()
    int_v_loss = 0.5 * ((new_int - ret_int.reshape(-1)[rows]) ** 2).mean()
    torch.set_rng_state(rng)
    forward_loss = rnd.loss(next_obs.reshape(-1, 4)[rows])["predictor"]
    loss = pg_loss - ent_coef * entropy.mean() + (ext_v_loss + int_v_loss) * vf_coef + forward_loss
    predictor = [p for p in rnd.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam([*agent.parameters(), *predictor], lr=lr, eps=1e-5)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(agent.parameters(), 0.5)
    torch.nn.utils.clip_grad_norm_(predictor, 0.5)
    optimizer.step()

    assert logs["losses/value_loss"] == pytest.approx((ext_v_loss + int_v_loss).item(), rel=1e-5)
    assert logs["intrinsic/predictor_loss"] == pytest.approx(forward_loss.item(), rel=1e-5)
    for ours, theirs in zip(algo.agent.parameters(), agent.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)
    for ours, theirs in zip(algo.intrinsic.predictor.parameters(), rnd.predictor.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=1e-5)


def test_an_iteration_is_num_steps_vector_steps_then_one_update() -> None:
    """``PPO.iterate`` steps the envs ``num_steps`` times, filling the buffer row by row (its cursor),
    then updates once: the buffer is rewound and the iteration counted."""
    from rlkd.core import loop
    from rlkd.core.guard import UpdateGuard

    torch.manual_seed(0)
    T, N = 5, 3
    cfg = PPOConfig(intrinsic="rnd", num_envs=N, num_steps=T, num_minibatches=1, update_epochs=1,
                    hidden_size=8, total_steps=4 * T * N)  # fmt: skip
    algo = PPO(cfg, gym.spaces.Box(-1.0, 1.0, (2,), np.float32), gym.spaces.Discrete(2))
    rng = np.random.default_rng(0)
    seen: list[np.ndarray] = []

    class FakeEnvs:  # a vector env: observation t has every entry t, episodes never end
        num_envs = N

        def step(self, action: np.ndarray) -> tuple:
            assert action.shape == (N,) and len(seen) < T
            seen.append(action)
            obs = np.full((N, 2), len(seen) / 10, np.float32)
            no = np.zeros(N, bool)
            return obs, rng.normal(size=N), no, no, {}

    first = np.zeros((N, 2), np.float32)
    envs = loop.Envs(cfg, FakeEnvs(), first, 0, (), None, UpdateGuard())
    logs = algo.iterate(envs, UpdateGuard())
    assert len(seen) == T and envs.steps == T * N and algo.iteration == 1 and algo.buffer.t == 0
    assert "losses/policy_loss" in logs and "intrinsic/reward_mean" in logs
    # Row t holds the observation the policy acted on and, for the bonus, the one the step led to.
    assert algo.buffer.obs[:, 0, 0].tolist() == pytest.approx([t / 10 for t in range(T)])
    assert algo.buffer.next_obs[:, 0, 0].tolist() == pytest.approx([(t + 1) / 10 for t in range(T)])
    assert torch.equal(algo.buffer.actions, torch.as_tensor(np.stack(seen)))
