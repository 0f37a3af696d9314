"""Media: animated GIFs from RGB frames (imageio), shared by every env, and the training-video callback.

Videos during training (``--capture-video N``, :class:`VideoRecorder`): one evaluation episode every
N env steps. Each recording acts with the current weights (the most likely action) in its own
one-env copy of the run's env, rendered to ``rgb_array``; the episode goes to
``<run>/videos/step_<N>.gif`` and, as an animated image, to TensorBoard (``videos/episode``:
TensorBoard's image tab plays GIFs). The global random generators are saved and restored around it,
so a run with videos trains exactly as one without. A recording that cannot render stops the run at
start-up, not halfway. It lives in ``core`` so that the agents (which record) and the analysis
(which evaluates the agents) both sit above it.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from rlkd.core.run import Run


def write_gif(frames: Sequence[np.ndarray] | np.ndarray, path: str | Path, fps: float = 10.0) -> Path:
    """Write RGB frames as a looping animated GIF.

    Args:
        frames: (T, H, W, 3) uint8 array or a sequence of (H, W, 3) / (H, W) arrays. Float frames
            in [0, 1] are scaled to [0, 255].
        path: Output file; parent folders are created.
        fps: Frames per second (GIF stores durations in whole milliseconds).

    Returns:
        The written path.

    Raises:
        ValueError: No frames, frames of different shapes, or a bad frame layout or fps.
    """
    if not np.isfinite(fps) or fps <= 0:
        raise ValueError(f"fps must be a positive number, got {fps!r}")
    arrays = [np.asarray(f) for f in frames]
    if not arrays:
        raise ValueError("write_gif needs at least one frame")
    shape = arrays[0].shape
    for i, f in enumerate(arrays):
        if f.shape != shape:
            raise ValueError(f"frame {i} has shape {f.shape}, frame 0 has {shape}: all frames must match")
    if not (len(shape) == 2 or (len(shape) == 3 and shape[2] in (1, 3, 4))):
        raise ValueError(f"frames must be (H, W), (H, W, 1), (H, W, 3) or (H, W, 4); got {shape}")

    # imageio (pillow's GIF writer underneath): imported here, most of rlkd never writes media.
    import imageio.v3 as iio

    def to_rgb(f: np.ndarray) -> np.ndarray:
        if f.dtype != np.uint8:
            # Floats are taken as [0, 1] images, integers as [0, 255].
            f = f * 255.0 if np.issubdtype(f.dtype, np.floating) else f
            f = np.clip(np.rint(f), 0, 255).astype(np.uint8)
        if f.ndim == 3 and f.shape[2] == 1:
            f = f[:, :, 0]
        if f.ndim == 2:
            return np.repeat(f[:, :, None], 3, axis=2)
        return f[:, :, :3]

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    frames_rgb = np.stack([to_rgb(f) for f in arrays])
    iio.imwrite(out, frames_rgb, extension=".gif", duration=max(round(1000.0 / fps), 1), loop=0)
    return out


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
        from rlkd.core.episodes import eval_env

        probe = eval_env(self.config, self.env_kwargs, 1, 0, render=True)  # fails now, not halfway
        probe.close()

    def on_step(self, step: int, envs: Any, run: Run) -> None:
        if step // self.every <= self.last // self.every:
            return
        self.last = step
        from rlkd.core.run import rng_state, set_rng_state

        saved = rng_state()
        try:
            frames, fps = self.record(int(self.config.get("seed", 0)) + VIDEO_SEED_OFFSET + step)
        finally:
            set_rng_state(saved)
        path = write_video(run, frames, fps, step)
        print(f"video: {path}", file=sys.stderr, flush=True)

    def record(self, seed: int) -> tuple[list[np.ndarray], float]:
        """One episode with the current policy: its frames and the env's frame rate."""
        from rlkd.core.episodes import eval_env, run_episodes

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

    path = write_gif(frames, run.path / "videos" / f"step_{step}.gif", fps=fps)
    height, width = np.asarray(frames[0]).shape[:2]
    image = Summary.Image(height=height, width=width, colorspace=3, encoded_image_string=path.read_bytes())
    summary = Summary(value=[Summary.Value(tag="videos/episode", image=image)])
    run.writer.file_writer.add_summary(summary, step)
    return path
