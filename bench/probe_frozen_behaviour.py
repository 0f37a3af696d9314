"""Diagnostic: how good a policy does a trained point-reach world model allow, and does the actor get there?

    python bench/probe_frozen_behaviour.py RUN --step 12000 [--updates 1500] [--discount 0.99 0.9]
        [--episodes 20] [--out results.json]     (--discount with no value: model-greedy only)

For one checkpoint of a Dreamer run on ``rlkd/PointReach-*`` (saved with its replay buffer,
``--checkpoint-replay``), with the world model frozen:

1. **model-greedy**: the true return of acting, at every step, with the action of a 9 x 9 grid over
   [-1, 1]^2 whose one-step imagined reward (prior mean, reward head) is highest, the latent
   filtered by the posterior as when the agent acts. One-step greedy on the *true* reward is the
   greedy controller (about -0.9), so this is what the model's reward knowledge is worth to a
   policy that uses it perfectly one step ahead.
2. **behaviour only**: for each ``--discount``, the checkpoint's actor and critic (their optimizer
   state fresh) are trained ``--updates`` more times by ``Behaviour.losses`` (the same imagination,
   lambda-returns and losses as training) on posterior starts of replayed batches, the model not
   updated; every ``--every`` updates the actor's mode is evaluated by its true return over
   ``--episodes`` episodes.

If the actor stays far below the model-greedy return on a frozen model, behaviour learning is what
fails; if it reaches it, the model's precision limits the agent. Results are printed as JSON lines.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

AXIS = np.linspace(-1.0, 1.0, 9)
SEED = 12345  # evaluation episodes' env seed
GRID = np.stack(np.meshgrid(AXIS, AXIS), -1).reshape(-1, 2).astype(np.float32)


def episodes_return(policy, env, episodes: int, seed: int, choose=None) -> float:
    """Mean true return over ``episodes`` with the policy's mode, or ``choose(latent)`` actions."""
    obs, _ = env.reset(seed=seed)
    first, total, done = np.ones(1, bool), 0.0, 0
    policy.latent = None
    while done < episodes:
        action = policy.act(obs, first, deterministic=True)
        if choose is not None:
            action = choose(policy.latent)[None]
            policy.prev_action = torch.as_tensor(action)  # the RSSM sees the action taken
        obs, reward, _, trunc, _ = env.step(action)
        total += float(reward[0])
        first = trunc
        done += int(trunc[0])
    return total / episodes


def model_greedy(agent):
    """latent -> the grid action with the highest one-step imagined reward (prior mean)."""
    from rlkd.world_model.rssm import RSSM

    grid = torch.as_tensor(GRID)

    @torch.no_grad()
    def choose(latent: dict) -> np.ndarray:
        start = {k: v.expand(len(GRID), -1) for k, v in latent.items()}
        reward = agent.wm.reward(RSSM.feat(agent.wm.rssm.img_step(start, grid, sample=False)))
        return GRID[int(reward.squeeze(-1).argmax())]

    return choose


def train_behaviour(agent, replay, cfg, updates: int, every: int, evaluate) -> list[dict]:
    """``updates`` behaviour updates on the frozen model; evaluations every ``every`` updates."""
    from rlkd.agents.dreamer import clip_step

    from rlkd.world_model.model import to_torch

    beh = agent.behaviour
    opts = {
        "actor": torch.optim.Adam(beh.actor.parameters(), lr=cfg.actor_lr, eps=1e-5),
        "critic": torch.optim.Adam(beh.critic.parameters(), lr=cfg.critic_lr, eps=1e-5),
    }
    rows, start_time = [], time.time()
    for update in range(updates + 1):
        if update % every == 0:
            agent.eval()
            rows.append({"update": update, "true_return": evaluate(), "seconds": time.time() - start_time})
            agent.train()
        if update == updates:
            break
        batch = to_torch(replay.sample(cfg.batch_size, cfg.batch_length), "cpu")
        with torch.no_grad():
            _, post, _ = agent.wm.loss(batch)
        start = {k: v.reshape(-1, v.shape[-1]) for k, v in post.items()}
        losses, metrics = beh.losses(agent.wm, start, batch["is_terminal"].reshape(-1))
        for name, net in (("actor", beh.actor), ("critic", beh.critic)):
            clip_step(opts[name], {name: losses[name]}, list(net.parameters()), cfg.grad_clip, None, name)
        if update % every == 0:  # with each evaluation, the diagnostics of the update that follows it
            rows[-1].update({k: float(v) for k, v in metrics.items()})
    return rows


def behaviour_curve(policy, env, state: dict, discount: float, args: argparse.Namespace) -> list[dict]:
    """Train the checkpoint's behaviour at ``discount`` on its frozen model and its own replay."""
    from rlkd.world_model.replay import Replay

    agent, obs_shape = policy.agent, tuple(state["obs_shape"])
    dtype = np.uint8 if len(obs_shape) == 3 else np.float32
    replay = Replay(1, agent.cfg.replay_capacity, obs_shape, dtype, int(state["action_dim"]), args.seed)
    replay.load_state_dict(state["replay"])
    agent.behaviour.discount = discount
    evaluate = lambda: episodes_return(policy, env, args.episodes, SEED)  # noqa: E731
    return train_behaviour(agent, replay, agent.cfg, args.updates, args.every, evaluate)


def main() -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=fmt)
    parser.add_argument("run", type=Path)
    parser.add_argument("--step", type=int, required=True, help="checkpoint step")
    parser.add_argument("--updates", type=int, default=1500)
    parser.add_argument("--every", type=int, default=500)
    parser.add_argument("--discount", type=float, nargs="*", default=[0.99, 0.9], help="none: greedy only")
    parser.add_argument("--episodes", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None, help="also write the results as JSON here")
    args = parser.parse_args()
    torch.set_num_threads(1)
    import gymnasium as gym
    from rlkd.envs.reach import PointReachVectorEnv, register_reach_envs

    from rlkd.analysis.evaluate import load_run_policy

    register_reach_envs()
    results = []
    for discount in [None, *args.discount]:  # None: the model-greedy controller
        torch.manual_seed(args.seed)
        np.random.seed(args.seed)
        run, data, _, policy = load_run_policy(args.run, args.step, "cpu")
        agent, state = policy.agent, data["state"]
        kwargs = dict(gym.spec(str(run.config["env_id"])).kwargs) | dict(run.config.get("env_kwargs") or {})
        env = PointReachVectorEnv(1, **kwargs)
        row: dict = {"run": str(args.run), "step": args.step}
        if discount is None:
            greedy = model_greedy(agent)
            row["model_greedy_return"] = episodes_return(policy, env, args.episodes, SEED, greedy)
        else:
            row |= {"discount": discount, "curve": behaviour_curve(policy, env, state, discount, args)}
        results.append(row)
        print(json.dumps(row), flush=True)
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
