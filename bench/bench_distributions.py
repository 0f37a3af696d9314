"""Does PPO's hand-written categorical/Gaussian pay against ``torch.distributions``?

Usage::

    taskset -c 0 python bench/bench_distributions.py [--repeats 2000] [--rounds 7]

Times, on one thread, what PPO does per call with its policy (``rlkd.agents.ppo_networks``): the
acting step (``sample``: action, log-prob, values) on 8 observations and the update's scoring
(``evaluate``: log-prob, entropy, values, forward and backward) on a 64-sample minibatch, for a
discrete (CartPole-sized) and a Gaussian (HalfCheetah-sized) policy, against the same network
with ``torch.distributions.Categorical`` / ``Normal`` built on its outputs. The two alternate
round by round; the script prints the median and min-max microseconds per call and the ratio.
The formulas are equal (``tests/test_ppo_maths.py``); this is only about speed.
"""

from __future__ import annotations

import argparse
import statistics
import time

import gymnasium as gym
import numpy as np
import torch
from rlkd.agents.ppo_networks import ActorCritic
from torch.distributions import Categorical, Normal


def with_torch(
    agent: ActorCritic, x: torch.Tensor, action: torch.Tensor | None, discrete: bool
) -> torch.Tensor:
    """The same quantities through torch.distributions (sampling if ``action`` is None)."""
    f = agent._features(x)
    out = agent.actor(agent.actor_body(f))
    dist = Categorical(logits=out) if discrete else Normal(out, agent.actor_logstd.expand_as(out).exp())
    a = dist.sample() if action is None else action
    logp = dist.log_prob(a) if discrete else dist.log_prob(a).sum(-1)
    ent = dist.entropy() if discrete else dist.entropy().sum(-1)
    v = agent.critic_ext(agent.critic_body(f)).squeeze(-1)
    return logp.sum() + ent.sum() + v.sum()


def timed(fn, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats * 1e6


def cases() -> dict[str, tuple]:
    torch.manual_seed(0)
    out = {}
    specs = (("discrete (4 -> 2)", 4, gym.spaces.Discrete(2)),
             ("Gaussian (17 -> 6)", 17, gym.spaces.Box(-1, 1, (6,), np.float32)))  # fmt: skip
    for name, obs_dim, space in specs:
        obs_space = gym.spaces.Box(-np.inf, np.inf, (obs_dim,), np.float32)
        agent = ActorCritic(obs_space, space, 64, int_head=False)
        discrete = isinstance(space, gym.spaces.Discrete)
        act_x, mb_x = torch.randn(8, obs_dim), torch.randn(64, obs_dim)
        mb_a = torch.randint(2, (64,)) if discrete else torch.randn(64, 6)

        def ours_act(agent=agent, x=act_x):
            with torch.no_grad():
                agent.sample(x)

        def theirs_act(agent=agent, x=act_x, d=discrete):
            with torch.no_grad():
                with_torch(agent, x, None, d)

        def ours_update(agent=agent, x=mb_x, a=mb_a):
            logp, ent, v, _ = agent.evaluate(x, a)
            (logp.sum() + ent.sum() + v.sum()).backward()

        def theirs_update(agent=agent, x=mb_x, a=mb_a, d=discrete):
            with_torch(agent, x, a, d).backward()

        out[f"{name}, act on 8"] = (ours_act, theirs_act)
        out[f"{name}, update on 64"] = (ours_update, theirs_update)
    return out


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--repeats", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| call | hand-written, us | torch.distributions, us | ratio |\n|---|---:|---:|---:|")
    for name, (ours, theirs) in cases().items():
        times: dict[str, list[float]] = {"ours": [], "theirs": []}
        for _ in range(args.rounds):  # alternate, so drifts of the machine hit both alike
            times["ours"].append(timed(ours, args.repeats))
            times["theirs"].append(timed(theirs, args.repeats))
        a, b = (statistics.median(times[k]) for k in ("ours", "theirs"))
        ours_span, theirs_span = (f"{min(times[k]):.0f}-{max(times[k]):.0f}" for k in ("ours", "theirs"))
        print(f"| {name} | {a:.0f} ({ours_span}) | {b:.0f} ({theirs_span}) | {b / a:.2f}x |")


if __name__ == "__main__":
    main()
