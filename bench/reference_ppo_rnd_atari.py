"""Reference PPO+RND on Atari: a plain single-file implementation, the baseline of bench_atari.py.

This is the *unoptimised* baseline that rlkd's PPO+RND is measured against (issue 4, benchmark 2).
It is written from scratch in the style of CleanRL's ``ppo_rnd_envpool.py`` and keeps that style's
straightforward choices on purpose, because they are what "a plain PyTorch PPO+RND" costs:

* raw envpool (``env_type="gymnasium"``, its own next-step autoreset), no vector-env adapter;
* the rollout stores observations as float32 ``(T, N, 4, 84, 84)``;
* every rollout step runs the policy trunk twice (once for the values, once for the action);
* the RND bonus is computed inside the rollout loop, one step (16 frames) at a time, outside
  ``torch.no_grad()`` (the graph is built and thrown away; the value is read with ``.data``);
* observation statistics are a numpy running mean/std of the last frame, clipped to +-5 after
  normalization; intrinsic rewards are divided by the running std of a reward forward filter;
* GAE for both streams in a Python loop (the intrinsic one non-episodic);
* 4 epochs x 4 minibatches; the predictor runs on the whole minibatch and the
  ``update_proportion`` Bernoulli mask is applied to its per-sample loss afterwards;
* one Adam over policy + predictor, global grad-norm clip 0.5.

Networks: the Nature CNN trunk followed by 256 -> 448 ReLU layers, a residual 448 "extra layer" for
the two value heads and a 448-wide hidden layer for the actor (the RND paper's policy); RND target:
3 leaky-ReLU convs -> linear 512; predictor: the same convs -> 512 -> 512 -> 512.

Throughput: env steps per second over ``--iterations`` rollout+update iterations, not counting the
first one (warm-up: allocator, oneDNN kernels) nor the short observation-normalization init.

    python bench/reference_ppo_rnd_atari.py --iterations 8
"""

from __future__ import annotations

import argparse
import json
import time

import envpool
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Categorical


class NumpyRunningMeanStd:
    """Running mean and variance of a stream of batches (Chan et al. parallel update), in numpy."""

    def __init__(self, shape: tuple[int, ...] = ()) -> None:
        self.mean = np.zeros(shape, np.float64)
        self.var = np.ones(shape, np.float64)
        self.count = 1e-4

    def update(self, batch: np.ndarray) -> None:
        self.update_from_moments(batch.mean(axis=0), batch.var(axis=0), batch.shape[0])

    def update_from_moments(self, batch_mean, batch_var, batch_count) -> None:
        delta = batch_mean - self.mean
        total = self.count + batch_count
        self.mean = self.mean + delta * batch_count / total
        m2 = self.var * self.count + batch_var * batch_count + delta**2 * self.count * batch_count / total
        self.var = m2 / total
        self.count = total


class ForwardFilter:
    """Discounted running sum of intrinsic rewards, whose std scales them (RND paper, section 2.4)."""

    def __init__(self, gamma: float) -> None:
        self.gamma = gamma
        self.value = None

    def update(self, rewards: np.ndarray) -> np.ndarray:
        self.value = rewards if self.value is None else self.value * self.gamma + rewards
        return self.value


def init_layer(layer: nn.Module, gain: float = np.sqrt(2), bias: float = 0.0) -> nn.Module:
    nn.init.orthogonal_(layer.weight, gain)
    nn.init.constant_(layer.bias, bias)
    return layer


def conv_stack(in_channels: int, act: type[nn.Module]) -> list[nn.Module]:
    return [
        init_layer(nn.Conv2d(in_channels, 32, 8, stride=4)),
        act(),
        init_layer(nn.Conv2d(32, 64, 4, stride=2)),
        act(),
        init_layer(nn.Conv2d(64, 64, 3, stride=1)),
        act(),
        nn.Flatten(),
    ]


class PolicyNet(nn.Module):
    def __init__(self, num_actions: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *conv_stack(4, nn.ReLU),
            init_layer(nn.Linear(64 * 7 * 7, 256)),
            nn.ReLU(),
            init_layer(nn.Linear(256, 448)),
            nn.ReLU(),
        )
        self.value_layer = nn.Sequential(init_layer(nn.Linear(448, 448), gain=0.1), nn.ReLU())
        self.policy_head = nn.Sequential(
            init_layer(nn.Linear(448, 448), gain=0.01),
            nn.ReLU(),
            init_layer(nn.Linear(448, num_actions), gain=0.01),
        )
        self.value_ext = init_layer(nn.Linear(448, 1), gain=0.01)
        self.value_int = init_layer(nn.Linear(448, 1), gain=0.01)

    def values(self, obs):
        h = self.body(obs / 255.0)
        v = h + self.value_layer(h)
        return self.value_ext(v), self.value_int(v)

    def act(self, obs, action=None):
        h = self.body(obs / 255.0)
        dist = Categorical(logits=self.policy_head(h))
        if action is None:
            action = dist.sample()
        v = h + self.value_layer(h)
        return action, dist.log_prob(action), dist.entropy(), self.value_ext(v), self.value_int(v)


class RNDNets(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.target = nn.Sequential(*conv_stack(1, nn.LeakyReLU), init_layer(nn.Linear(64 * 7 * 7, 512)))
        self.predictor = nn.Sequential(
            *conv_stack(1, nn.LeakyReLU),
            init_layer(nn.Linear(64 * 7 * 7, 512)),
            nn.ReLU(),
            init_layer(nn.Linear(512, 512)),
            nn.ReLU(),
            init_layer(nn.Linear(512, 512)),
        )
        for p in self.target.parameters():
            p.requires_grad = False

    def forward(self, x):
        return self.predictor(x), self.target(x)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--env-id", default="MontezumaRevenge-v5")
    p.add_argument("--iterations", type=int, default=8, help="timed iterations (after 1 warm-up)")
    p.add_argument("--num-envs", type=int, default=16)
    p.add_argument("--num-steps", type=int, default=128)
    p.add_argument("--obs-norm-init-iterations", type=int, default=2, help="x num_steps random steps")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--torch-threads", type=int, default=0, help="0 keeps torch's default")
    p.add_argument("--json", action="store_true", help="print one JSON line with the result at the end")
    args = p.parse_args()

    # Hyperparameters of the RND paper / CleanRL's Atari RND example.
    lr, gamma, int_gamma, lam = 1e-4, 0.999, 0.99, 0.95
    clip_coef, ent_coef, vf_coef, max_grad_norm = 0.1, 0.001, 0.5, 0.5
    ext_coef, int_coef, update_proportion = 2.0, 1.0, 0.25
    epochs, num_minibatches = 4, 4
    T, N = args.num_steps, args.num_envs
    batch_size = T * N
    minibatch_size = batch_size // num_minibatches
    total_iterations = args.iterations + 1

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    device = torch.device("cpu")

    envs = envpool.make(
        args.env_id,
        env_type="gymnasium",
        num_envs=N,
        seed=args.seed,
        episodic_life=False,
        reward_clip=True,
        repeat_action_probability=0.25,
    )
    num_actions = envs.action_space.n
    obs_shape = envs.observation_space.shape  # (4, 84, 84)

    agent = PolicyNet(num_actions).to(device)
    rnd = RNDNets().to(device)
    params = list(agent.parameters()) + list(rnd.predictor.parameters())
    optimizer = torch.optim.Adam(params, lr=lr, eps=1e-5)
    obs_rms = NumpyRunningMeanStd((1, 1, 84, 84))
    reward_rms = NumpyRunningMeanStd()
    forward_filter = ForwardFilter(int_gamma)

    obs = torch.zeros((T, N, *obs_shape)).to(device)
    actions = torch.zeros((T, N)).to(device)
    logprobs = torch.zeros((T, N)).to(device)
    rewards = torch.zeros((T, N)).to(device)
    int_rewards = torch.zeros((T, N)).to(device)
    dones = torch.zeros((T, N)).to(device)
    ext_values = torch.zeros((T, N)).to(device)
    int_values = torch.zeros((T, N)).to(device)
    episode_returns = np.zeros(N)
    finished_returns: list[float] = []

    raw_obs, _ = envs.reset()
    next_obs = torch.Tensor(raw_obs).to(device)
    next_done = torch.zeros(N).to(device)

    # Observation-normalization init: a random agent's last frames (kept short: a throughput bench).
    frames = []
    for _ in range(T * args.obs_norm_init_iterations):
        s, *_ = envs.step(np.random.randint(0, num_actions, size=N))
        frames.append(s[:, 3:4])
        if len(frames) == T:
            obs_rms.update(np.concatenate(frames).astype(np.float64))  # (T*N, 1, 84, 84)
            frames = []

    global_step = 0
    iteration_times = []
    for iteration in range(total_iterations):
        t_start = time.perf_counter()
        optimizer.param_groups[0]["lr"] = lr * (1.0 - iteration / total_iterations)

        for step in range(T):
            global_step += N
            obs[step] = next_obs
            dones[step] = next_done
            with torch.no_grad():
                v_ext, v_int = agent.values(obs[step])
                ext_values[step], int_values[step] = v_ext.flatten(), v_int.flatten()
                action, logprob, _, _, _ = agent.act(obs[step])
            actions[step] = action
            logprobs[step] = logprob

            raw_obs, reward, term, trunc, info = envs.step(action.cpu().numpy())
            done = np.logical_or(term, trunc)
            rewards[step] = torch.tensor(reward).to(device).view(-1)
            next_obs, next_done = torch.Tensor(raw_obs).to(device), torch.Tensor(done).to(device)
            rnd_obs = (
                (
                    (next_obs[:, 3, :, :].reshape(N, 1, 84, 84) - torch.from_numpy(obs_rms.mean).to(device))
                    / torch.sqrt(torch.from_numpy(obs_rms.var).to(device))
                ).clip(-5, 5)
            ).float()
            target_feat = rnd.target(rnd_obs)
            pred_feat = rnd.predictor(rnd_obs)
            int_rewards[step] = ((target_feat - pred_feat).pow(2).sum(1) / 2).data
            episode_returns += info["reward"]
            for i, d in enumerate(done):
                if d:
                    finished_returns.append(float(episode_returns[i]))
                    episode_returns[i] = 0.0

        # Scale intrinsic rewards by the running std of their forward-filtered (discounted) sum.
        filtered = np.array([forward_filter.update(r) for r in int_rewards.cpu().data.numpy().T])
        reward_rms.update_from_moments(np.mean(filtered), np.std(filtered) ** 2, len(filtered))
        int_rewards /= np.sqrt(reward_rms.var)

        with torch.no_grad():
            last_ext, last_int = agent.values(next_obs)
            last_ext, last_int = last_ext.reshape(1, -1), last_int.reshape(1, -1)
            ext_adv = torch.zeros_like(rewards)
            int_adv = torch.zeros_like(int_rewards)
            ext_gae = 0
            int_gae = 0
            for t in reversed(range(T)):
                if t == T - 1:
                    ext_notdone, ext_next, int_next = 1.0 - next_done, last_ext, last_int
                else:
                    ext_notdone, ext_next, int_next = 1.0 - dones[t + 1], ext_values[t + 1], int_values[t + 1]
                ext_delta = rewards[t] + gamma * ext_next * ext_notdone - ext_values[t]
                int_delta = int_rewards[t] + int_gamma * int_next - int_values[t]
                ext_adv[t] = ext_gae = ext_delta + gamma * lam * ext_notdone * ext_gae
                int_adv[t] = int_gae = int_delta + int_gamma * lam * int_gae
            ext_returns = ext_adv + ext_values
            int_returns = int_adv + int_values

        b_obs = obs.reshape((-1, *obs_shape))
        b_logprobs = logprobs.reshape(-1)
        b_actions = actions.reshape(-1)
        b_ext_returns = ext_returns.reshape(-1)
        b_int_returns = int_returns.reshape(-1)
        b_advantages = int_adv.reshape(-1) * int_coef + ext_adv.reshape(-1) * ext_coef

        obs_rms.update(b_obs[:, 3, :, :].reshape(-1, 1, 84, 84).cpu().numpy())
        rnd_inputs = (
            (
                (b_obs[:, 3, :, :].reshape(-1, 1, 84, 84) - torch.from_numpy(obs_rms.mean).to(device))
                / torch.sqrt(torch.from_numpy(obs_rms.var).to(device))
            ).clip(-5, 5)
        ).float()

        indices = np.arange(batch_size)
        for _epoch in range(epochs):
            np.random.shuffle(indices)
            for start in range(0, batch_size, minibatch_size):
                mb = indices[start : start + minibatch_size]
                pred, target = rnd(rnd_inputs[mb])
                fwd_loss = F.mse_loss(pred, target.detach(), reduction="none").mean(-1)
                mask = (torch.rand(len(fwd_loss), device=device) < update_proportion).float()
                fwd_loss = (fwd_loss * mask).sum() / torch.max(mask.sum(), torch.tensor([1.0], device=device))

                _, newlogprob, entropy, new_ext, new_int = agent.act(b_obs[mb], b_actions.long()[mb])
                logratio = newlogprob - b_logprobs[mb]
                ratio = logratio.exp()
                mb_adv = b_advantages[mb]
                mb_adv = (mb_adv - mb_adv.mean()) / (mb_adv.std() + 1e-8)
                pg_loss = torch.max(
                    -mb_adv * ratio, -mb_adv * torch.clamp(ratio, 1 - clip_coef, 1 + clip_coef)
                ).mean()
                ext_v_loss = 0.5 * ((new_ext.view(-1) - b_ext_returns[mb]) ** 2).mean()
                int_v_loss = 0.5 * ((new_int.view(-1) - b_int_returns[mb]) ** 2).mean()
                v_loss = ext_v_loss + int_v_loss
                loss = pg_loss - ent_coef * entropy.mean() + vf_coef * v_loss + fwd_loss

                optimizer.zero_grad()
                loss.backward()
                nn.utils.clip_grad_norm_(params, max_grad_norm)
                optimizer.step()

        elapsed = time.perf_counter() - t_start
        iteration_times.append(elapsed)
        tag = " (warm-up, not counted)" if iteration == 0 else ""
        print(
            f"iteration {iteration}: {batch_size / elapsed:.1f} steps/s, loss {loss.item():.4f}, "
            f"fwd_loss {fwd_loss.item():.4f}{tag}",
            flush=True,
        )

    timed = iteration_times[1:]
    sps = batch_size * len(timed) / sum(timed)
    print(
        f"reference PPO+RND {args.env_id}: {sps:.1f} env steps/s over {len(timed)} iterations "
        f"({batch_size * len(timed)} steps), torch threads {torch.get_num_threads()}"
    )
    if args.json:
        print(json.dumps({"sps": sps, "steps": batch_size * len(timed), "threads": torch.get_num_threads()}))
    envs.close()


if __name__ == "__main__":
    main()
