"""Small media helpers shared by every env: animated GIFs from RGB frames (imageio)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


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
