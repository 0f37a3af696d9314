"""Diagnostic: does a Dreamer's imagination carry the effect of actions on the point-reach reward?

    python bench/probe_action_effect.py RUN [RUN ...] [--checkpoints all] [--episodes 8]

DreamerV2's actor learns by backpropagating imagined returns through the RSSM prior. On
``rlkd/PointReach-*`` the true one-step reward of an action is known in closed form from the env's
state (``-|clip(agent + step_size * a) - target|``), so this script measures, for checkpoints of
trained runs, how well the *prior's* one-step reward prediction follows the true one:

1. ``episodes`` evaluation episodes with the actor's mode; at every step the posterior latent (what
   imagination starts from) and the true agent and target positions are kept.
2. From each latent, every action of a 5 x 5 grid over [-1, 1]^2 is imagined one step (prior mean,
   no sampling) and the reward head read; the true rewards of the same actions are computed.
3. Per latent: the Pearson correlation over the 25 actions between imagined and true reward (does
   the model rank actions right?), the ratio of their spreads (does it know how much actions
   matter?), the cosine between the gradient of the imagined reward with respect to the action
   at the actor's action and the true gradient (the direction to the target), the same cosine for
   the gradient of what the actor maximises (the imagined lambda-return of ``Behaviour.losses``,
   mean of 8 imagined rollouts) and of its critic part (the slow critic's value of the next
   state), and the regret (best true reward on the grid minus the true
   reward) of the model's best grid action, of the actor's action and of a uniformly random grid
   action. Medians over latents, per checkpoint; and the fraction of the actor's action components
   at the bounds (|a| > 0.99).
4. Over all latents: the correlation of the slow critic's value with the discounted return of the
   straight-to-target controller from the true state (does the critic know that states near the
   target are better?).

A model that ignores the action gives correlation ~0 and spread ratio ~0; one whose prior carries
the move but not the target gives a spread but no correlation.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

GRID = np.stack(np.meshgrid(np.linspace(-1, 1, 5), np.linspace(-1, 1, 5)), -1).reshape(-1, 2)


def true_reward(agent: np.ndarray, target: np.ndarray, actions: np.ndarray, step: float) -> np.ndarray:
    """(K,) rewards of moving from ``agent`` by each of ``actions`` (K, 2) towards ``target``."""
    moved = np.clip(agent + step * np.clip(actions, -1.0, 1.0), 0.0, 1.0)
    return -np.linalg.norm(moved - target, axis=-1)


def collect(policy, env, episodes: int, seed: int) -> list[tuple[dict, np.ndarray, np.ndarray, np.ndarray]]:
    """(latent, agent position, target position, the actor's action) at every step of ``episodes``."""
    out = []
    obs, _ = env.reset(seed=seed)
    first = np.ones(1, bool)
    policy.latent = None
    for _ in range(episodes):
        while True:
            agent_pos, target_pos = env.agent[0].copy(), env.target[0].copy()
            action = policy.act(obs, first, deterministic=True)
            latent = {k: v.clone() for k, v in policy.latent.items()}
            out.append((latent, agent_pos, target_pos, action[0].copy()))
            obs, _, _, trunc, _ = env.step(action)
            first = trunc
            if trunc[0]:
                break
    return out


def greedy_value(agent: np.ndarray, target: np.ndarray, step: float, gamma: float, steps: int = 400) -> float:
    """Discounted return from (agent, target) of the straight-to-target controller, no time limit
    (a Dreamer critic sees no clock): what a good critic's value should rank states by."""
    pos, total = agent.copy(), 0.0
    for k in range(steps):
        move = np.clip((target - pos) / step, -1.0, 1.0)
        pos = np.clip(pos + step * move, 0.0, 1.0)
        total += gamma**k * -float(np.linalg.norm(pos - target))
    return total


def return_gradient(agent, latent: dict, action: np.ndarray, rollouts: int) -> tuple[np.ndarray, np.ndarray]:
    """Gradients with respect to the first action of what the actor maximises from ``latent``: the
    imagined lambda-return (``Behaviour.losses``: sampled prior, the actor after the first step, the
    slow critic), and of the slow critic's value of the next state alone; means over ``rollouts``."""
    from rlkd.world_model.behaviour import imagined_discount, lambda_return
    from rlkd.world_model.rssm import RSSM

    beh, rssm = agent.behaviour, agent.wm.rssm
    start = {k: v.expand(rollouts, -1) for k, v in latent.items()}
    first = torch.as_tensor(action, dtype=torch.float32).expand(rollouts, -1).clone().requires_grad_(True)
    state = rssm.img_step(start, first)
    feats = [RSSM.feat(start), RSSM.feat(state)]
    for _ in range(beh.horizon - 2):
        act, _, _ = beh.actor.sample(feats[-1].detach())
        state = rssm.img_step(state, act)
        feats.append(RSSM.feat(state))
    feat = torch.stack(feats, 0)  # (H, R, F)
    reward = agent.wm.reward(feat).squeeze(-1)
    value = beh.slow_critic(feat).squeeze(-1)
    discount = imagined_discount(agent.wm.cont, feat, torch.zeros(rollouts, dtype=torch.bool), beh.discount)
    target = lambda_return(reward[:-1], value[:-1], discount[:-1], value[-1], beh.lam)
    (g_return,) = torch.autograd.grad(target[0].sum(), first, retain_graph=True)
    (g_value,) = torch.autograd.grad(value[1].sum(), first)
    return g_return.mean(0).numpy(), g_value.mean(0).numpy()


def cosine(a: np.ndarray, b: np.ndarray) -> float | None:
    denom = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / denom) if denom > 0 else None


def probe(agent, samples, step: float, rollouts: int = 8) -> dict[str, float]:
    """Medians over ``samples`` of the three measures in the module docstring."""
    from rlkd.world_model.rssm import RSSM

    rssm, reward = agent.wm.rssm, agent.wm.reward
    corr, spread, cos_reward, cos_return, cos_value, model_regret, actor_regret, random_regret = (
        [] for _ in range(8)
    )
    grid = torch.as_tensor(GRID, dtype=torch.float32)
    critic_values, good_values = [], []
    for latent, pos, goal, act in samples:
        with torch.no_grad():
            critic_values.append(float(agent.behaviour.slow_critic(RSSM.feat(latent)).squeeze()))
        good_values.append(greedy_value(pos, goal, step, agent.behaviour.discount))
        with torch.no_grad():
            start = {k: v.expand(len(GRID), -1) for k, v in latent.items()}
            imagined = reward(RSSM.feat(rssm.img_step(start, grid, sample=False))).squeeze(-1).numpy()
        true = true_reward(pos, goal, GRID, step)
        if true.std() > 1e-6 and imagined.std() > 1e-9:
            corr.append(float(np.corrcoef(imagined, true)[0, 1]))
        spread.append(float(imagined.std() / max(true.std(), 1e-9)))
        model_regret.append(float(true.max() - true[imagined.argmax()]))
        actor_regret.append(float(true.max() - true_reward(pos, goal, act[None], step)[0]))
        random_regret.append(float(true.max() - true.mean()))  # a uniform action of the grid
        a = torch.as_tensor(act[None], dtype=torch.float32).requires_grad_(True)
        r = reward(RSSM.feat(rssm.img_step(latent, a, sample=False))).sum()
        (grad,) = torch.autograd.grad(r, a)
        inside = (pos + step * act > 0.0) & (pos + step * act < 1.0)  # the true gradient, off the walls
        moved = np.clip(pos + step * act, 0.0, 1.0)
        g_true = -(moved - goal) / max(np.linalg.norm(moved - goal), 1e-9) * step * inside
        g_return, g_value = return_gradient(agent, latent, act, rollouts)
        for out, g in ((cos_reward, grad[0].numpy()), (cos_return, g_return), (cos_value, g_value)):
            c = cosine(g, g_true)
            if c is not None:
                out.append(c)
    return {
        "reward_corr": float(np.median(corr)) if corr else float("nan"),
        "spread_ratio": float(np.median(spread)),
        "cos_reward": float(np.median(cos_reward)),
        "cos_return": float(np.median(cos_return)),
        "cos_value": float(np.median(cos_value)),
        "return_points_to_target": float(np.mean(np.array(cos_return) > 0)),
        "model_regret": float(np.median(model_regret)),
        "actor_regret": float(np.median(actor_regret)),
        "random_regret": float(np.median(random_regret)),
        "value_corr": float(np.corrcoef(critic_values, good_values)[0, 1]),
        "saturated": float(np.mean([np.abs(act) > 0.99 for *_, act in samples])),
        "latents": len(samples),
    }


def main() -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--checkpoints", default="all", help="'all' or comma-separated steps")
    parser.add_argument("--episodes", type=int, default=8)
    parser.add_argument("--seed", type=int, default=12345)
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    import gymnasium as gym
    from rlkd.envs.reach import PointReachVectorEnv, register_reach_envs

    from rlkd.analysis.evaluate import load_run_policy
    from rlkd.core.run import Run

    register_reach_envs()
    results = []
    for path in args.runs:
        run = Run.open(path)
        chosen = args.checkpoints
        steps = run.checkpoint_steps() if chosen == "all" else [int(s) for s in chosen.split(",")]
        # The registered env's own settings (pixels or state, the agent's colour) and the run's.
        kwargs = dict(gym.spec(str(run.config["env_id"])).kwargs) | dict(run.config.get("env_kwargs") or {})
        for step in steps:
            _, _, _, policy = load_run_policy(path, step, "cpu")
            env = PointReachVectorEnv(1, **kwargs)
            samples = collect(policy, env, args.episodes, args.seed)
            row = {"run": str(path), "step": step, **probe(policy.agent, samples, env.step_size)}
            results.append(row)
            print(json.dumps(row))
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
