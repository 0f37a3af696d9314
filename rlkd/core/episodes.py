"""Playing a policy in a rebuilt copy of a run's env: what ``rlkd eval``, training videos and the
failure monitor share.

:func:`eval_env` rebuilds the env from a run's config (rendering ``rgb_array`` frames when asked, with
Gymnasium's ALE env standing in for envpool Atari, which cannot render on CPU); :func:`run_episodes`
plays a fixed quota of episodes per env (so short episodes are not favoured) and collects returns,
lengths, successes, the env's evaluation records and frames. Its rules are stated in
:mod:`rlkd.analysis.evaluate`.

Shapes: observations and actions have the number of envs ``N`` first; a frame is ``(H, W, C)``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np

from rlkd.errors import UserError


def eval_env(config: dict[str, Any], kwargs: dict[str, Any], num_envs: int, seed: int, render: bool) -> Any:
    """Rebuild the run's env; with ``render`` make it render ``rgb_array`` frames (or fail clearly)."""
    from rlkd.envs import EpisodeStatistics, gymnasium_ids, make_vec, registered_id, resolve_backend
    from rlkd.envs.atari import ale_id, ale_vector_env

    env_id = str(config["env_id"])
    backend = str(config.get("env_backend", "auto"))
    if not render:
        return make_vec(env_id, num_envs, seed, backend, **kwargs)
    # pygame (classic control) renders off-screen; without this SDL looks for a display and prints
    # "error: XDG_RUNTIME_DIR is invalid" on headless machines.
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
    if resolve_backend(registered_id(env_id), backend) == "envpool":
        # envpool renders nothing on CPU: Atari plays in Gymnasium's ALE env preprocessed as envpool
        # does; other tasks in Gymnasium's env of the same id, which has the same spaces.
        if ale_id(env_id) is not None:
            return EpisodeStatistics(ale_vector_env(env_id, num_envs, "rgb_array", **kwargs))
        if env_id not in gymnasium_ids():
            raise UserError(
                f"cannot record a video of {env_id!r}: envpool envs do not render here and Gymnasium "
                "has no env of that id; evaluate without --video"
            )
        backend = "gymnasium"
    try:
        envs = make_vec(env_id, num_envs, seed, backend, render_mode="rgb_array", **kwargs)
    except UserError as exc:
        raise UserError(f"cannot record a video of {env_id!r}: {exc}") from None
    if "rgb_array" not in (envs.metadata.get("render_modes") or ()):
        envs.close()
        raise UserError(
            f"cannot record a video of {env_id!r}: it does not support render_mode='rgb_array' "
            f"(its render modes: {envs.metadata.get('render_modes') or 'none'}); evaluate without --video"
        )
    return envs


def _frame(envs: Any, env_id: str) -> np.ndarray:
    """One RGB frame of env 0 (vector envs return a frame, or a tuple/list/array of frames)."""
    import gymnasium as gym

    try:
        frame = envs.render()
    except (gym.error.Error, NotImplementedError) as exc:
        raise UserError(f"cannot record a video of {env_id!r}: rendering failed: {exc}") from None
    if isinstance(frame, tuple | list):
        frame = frame[0] if frame else None
    if frame is None:
        raise UserError(f"cannot record a video of {env_id!r}: its render() returned no frame")
    frame = np.asarray(frame)
    if frame.ndim == 4:  # (num_envs, H, W, C)
        frame = frame[0]
    if frame.ndim not in (2, 3):
        raise UserError(f"cannot record a video of {env_id!r}: render() gave an array of shape {frame.shape}")
    return frame


def run_episodes(
    envs: Any,
    policy: Any,
    episodes: int,
    seed: int,
    deterministic: bool,
    record_video: bool,
    env_id: str,
    on_end: Callable[[int, bool, bool | None, float], None] | None = None,
) -> dict[str, Any]:
    """Step ``envs`` until every env finished its quota of episodes; collect per-episode results.

    ``on_end(i, counted, success, return)`` is called for every env whose episode just ended
    (:class:`rlkd.monitor.traces.Tracer` keeps the counted episodes' steps)."""
    n = envs.num_envs
    quota = np.full(n, episodes // n, dtype=np.int64)
    quota[: episodes % n] += 1
    done_count = np.zeros(n, dtype=np.int64)
    stats: dict[str, Any] = {"returns": [], "lengths": [], "successes": [], "records": [], "frames": []}
    obs, _ = envs.reset(seed=seed)
    first = np.ones(n, dtype=bool)
    # An env may provide an evaluation hook (see rlkd.envs.agv.trajectories) that follows every episode.
    hook = getattr(envs.unwrapped, "eval_tracker", None)
    stats["tracker"] = tracker = hook() if callable(hook) else None
    recording = record_video
    while (done_count < quota).any():
        if recording:
            stats["frames"].append(_frame(envs, env_id))
        actions = policy.act(obs, first, deterministic)
        obs, _, terminated, truncated, info = envs.step(actions)
        done = np.logical_or(terminated, truncated)
        ended_records = tracker.step(info, done) if tracker is not None else {}
        first = done
        if not done.any():
            continue
        if "_episode" not in info:
            raise RuntimeError(f"{env_id}: an episode ended without info['episode'] statistics")
        for i in np.flatnonzero(done):
            ep = info["episode"]
            success = bool(ep["success"][i]) if "success" in ep else None
            counted = bool(done_count[i] < quota[i])
            if on_end is not None:
                on_end(int(i), counted, success, float(ep["r"][i]))
            if not counted:
                continue
            done_count[i] += 1
            stats["returns"].append(float(ep["r"][i]))
            stats["lengths"].append(int(ep["l"][i]))
            stats["successes"].append(success)
            if i in ended_records:
                stats["records"].append(ended_records[i])
            if recording and i == 0:
                recording = False
    return stats
