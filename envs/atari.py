"""Rendering stand-ins for envpool's Atari tasks: Gymnasium's ALE env with the same preprocessing.

envpool renders nothing on CPU, so ``rlkd eval --video`` (and ``--capture-video``) of an Atari run
plays the policy in Gymnasium's ``ALE/<Game>-v5`` wrapped the way envpool preprocesses it by default:
frame skip 4 with a max over the last two frames, 84x84 grayscale, a stack of 4, up to 30 no-ops at
reset, sticky actions and an episode limit of ``max_episode_steps`` agent steps (27,000 by
default). The observations have envpool's shape (4, 84, 84); the emulator and the resizing are
Gymnasium's, so an evaluation there is close to, not identical with, one in envpool.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from gymnasium.vector import AutoresetMode, VectorEnv

FRAME_SKIP = 4


def ale_id(env_id: str) -> str | None:
    """``ALE/<Game>-v5`` for an envpool Atari id (``Pong-v5``) when ale-py knows it, else None."""
    try:
        import ale_py
    except ImportError:
        return None
    gym.register_envs(ale_py)
    candidate = f"ALE/{env_id}"
    return candidate if candidate in gym.registry else None


def ale_vector_env(
    env_id: str, num_envs: int, render_mode: str | None = None, **envpool_kwargs: Any
) -> VectorEnv:
    """The Gymnasium stand-in of envpool Atari task ``env_id`` (see the module docstring).

    ``envpool_kwargs`` are the run's envpool options; those that change what the agent sees are
    mirrored (``repeat_action_probability``, ``episodic_life``, ``max_episode_steps``, ``noop_max``),
    the rest (reward clipping, thread counts) do not matter for playing an episode.
    """
    from gymnasium.wrappers import AtariPreprocessing, FrameStackObservation

    limit = int(envpool_kwargs.get("max_episode_steps", 27_000)) * FRAME_SKIP  # ALE counts frames
    preprocess = {"frame_skip": FRAME_SKIP, "screen_size": 84, "grayscale_obs": True,
                  "noop_max": int(envpool_kwargs.get("noop_max", 30)),
                  "terminal_on_life_loss": bool(envpool_kwargs.get("episodic_life", False))}  # fmt: skip
    return gym.make_vec(
        ale_id(env_id), num_envs, vectorization_mode="sync",
        vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP},
        wrappers=[lambda e: AtariPreprocessing(e, **preprocess), lambda e: FrameStackObservation(e, 4)],
        frameskip=1, repeat_action_probability=float(envpool_kwargs.get("repeat_action_probability", 0.25)),
        max_episode_steps=limit, render_mode=render_mode,
    )  # fmt: skip
