"""Videos during training (``--capture-video N``): one evaluation episode every N env steps.

Each recording acts with the current weights (the most likely action) in its own one-env copy of
the run's env, rendered to ``rgb_array``; the episode goes to ``<run>/videos/step_<N>.gif`` and, as
an animated image, to TensorBoard (``videos/episode``: TensorBoard's image tab plays GIFs). The
global random generators are saved and restored around it, so a run with videos trains exactly as
one without. A recording that cannot render stops the run at start-up, not halfway.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from rlkd.core.run import Run, rng_state, set_rng_state

VIDEO_SEED_OFFSET = 20_000
"""Recorded episodes are seeded with the run's seed + this + the step (not training episodes)."""


class VideoRecorder:
    """A loop callback (:class:`rlkd.core.loop.Callback`) recording an episode every ``every`` steps.

    Args:
        config: The run's config as plain data (env id, backend, seed).
        env_kwargs: The env kwargs the run trains with.
        algo: The algorithm; its ``policy()`` acts with the current weights.
        every: Env steps between recordings.
    """

    def __init__(
        self, config: Mapping[str, Any], env_kwargs: Mapping[str, Any], algo: Any, every: int
    ) -> None:
        self.config, self.env_kwargs, self.algo, self.every = dict(config), dict(env_kwargs), algo, every
        self.last = 0

    def on_start(self, envs: Any) -> None:
        from rlkd.analysis.evaluate import eval_env

        probe = eval_env(self.config, self.env_kwargs, 1, 0, render=True)  # fails now, not halfway
        probe.close()

    def on_step(self, step: int, envs: Any, run: Run) -> None:
        if step // self.every <= self.last // self.every:
            return
        self.last = step
        saved = rng_state()
        try:
            frames, fps = self.record(int(self.config.get("seed", 0)) + VIDEO_SEED_OFFSET + step)
        finally:
            set_rng_state(saved)
        path = write_video(run, frames, fps, step)
        print(f"video: {path}", file=sys.stderr, flush=True)

    def record(self, seed: int) -> tuple[list[np.ndarray], float]:
        """One episode with the current policy: its frames and the env's frame rate."""
        from rlkd.analysis.evaluate import eval_env, run_episodes

        envs = eval_env(self.config, self.env_kwargs, 1, seed, render=True)
        try:
            stats = run_episodes(envs, self.algo.policy(), 1, seed, True, True, str(self.config["env_id"]))
        finally:
            envs.close()
        return stats["frames"], float(envs.metadata.get("render_fps") or 30)

    def state_dict(self) -> dict[str, Any]:
        return {"video_step": self.last}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.last = int(state.get("video_step", 0))


def write_video(run: Run, frames: list[np.ndarray], fps: float, step: int) -> Path:
    """``<run>/videos/step_<N>.gif`` and the same GIF as TensorBoard image ``videos/episode``."""
    from tensorboard.compat.proto.summary_pb2 import Summary

    from rlkd.core.media import write_gif

    path = write_gif(frames, run.path / "videos" / f"step_{step}.gif", fps=fps)
    height, width = np.asarray(frames[0]).shape[:2]
    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=path.read_bytes())
    summary = Summary(value=[Summary.Value(tag="videos/episode", image=image)])
    run.writer.file_writer.add_summary(summary, step)
    return path
