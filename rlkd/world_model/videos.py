"""Video files as action-free episodes (DisWM pretrains on videos), and episodes written as mp4.

A folder of video files (``.mp4``, ``.webm``, ``.avi``, ``.mkv``, ``.mov``, ``.gif``) is read as a
pretraining dataset: each file is decoded (OpenCV's FFmpeg reader; GIFs with Pillow through
imageio, since FFmpeg's GIF decoder drops frames), centre-cropped to a square, area-resized to the
model's frame size and cut into episodes of ``episode_length`` frames::

    image        uint8   (T, S, S, 3)   RGB frame t
    action       float32 (T, 0)         none: the videos are action-free
    reward       float32 (T,)           zeros
    is_first     bool    (T,)           True at t = 0
    is_terminal  bool    (T,)           False (a cut is not a termination)
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import imageio.v2 as imageio
import numpy as np

from rlkd.errors import UserError

VIDEO_SUFFIXES = (".mp4", ".webm", ".avi", ".mkv", ".mov", ".gif")


def video_files(directory: Path) -> list[Path]:
    """The video files directly inside ``directory``, sorted by name."""
    return sorted(p for p in Path(directory).iterdir() if p.is_file() and p.suffix.lower() in VIDEO_SUFFIXES)


def square_resize(frame: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop an (H, W, 3) frame to a square and area-resize it to (size, size, 3)."""
    h, w = frame.shape[:2]
    side = min(h, w)
    top, left = (h - side) // 2, (w - side) // 2
    crop = frame[top : top + side, left : left + side]
    if side == size:
        return np.ascontiguousarray(crop)
    # INTER_AREA averages the source pixels under each target pixel: no aliasing when shrinking.
    return cv2.resize(crop, (size, size), interpolation=cv2.INTER_AREA)


def _decode(path: Path, size: int) -> list[np.ndarray]:
    """Every frame of ``path`` as (size, size, 3) uint8 RGB; [] when nothing decodes."""
    if path.suffix.lower() == ".gif":
        try:
            raw = imageio.mimread(path, memtest=False)
        except (OSError, ValueError, RuntimeError):
            return []
        return [square_resize(np.asarray(f)[..., :3].astype(np.uint8), size) for f in raw if np.ndim(f) == 3]
    # FFmpeg writes its own lines to stderr on damaged files; the user gets one error line instead.
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    frames = []
    try:
        while cap.isOpened():
            ok, bgr = cap.read()
            if not ok:
                break
            frames.append(square_resize(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), size))
    finally:
        cap.release()
    return frames


def video_episodes(
    path: Path, size: int, episode_length: int, min_length: int
) -> list[dict[str, np.ndarray]]:
    """Decode one video file and cut it into action-free episodes (module docstring).

    Args:
        path: The video file.
        size: Frame side of the model (32 or 64).
        episode_length: Frames per episode; 0 keeps the whole file as one episode.
        min_length: Fewest frames an episode needs (a shorter last piece is dropped).

    Raises:
        UserError: The file cannot be decoded, holds no frame, or is shorter than ``min_length``.
    """
    frames = _decode(path, size)
    if not frames:
        raise UserError(f"video file {path} cannot be decoded or holds no frame; delete or re-encode it")
    if len(frames) < min_length:
        raise UserError(
            f"video file {path} has {len(frames)} frames, fewer than the {min_length} a training window "
            "needs; remove it or lower --batch-length"
        )
    step = episode_length or len(frames)
    pieces = [frames[i : i + step] for i in range(0, len(frames), step)]
    return [_episode(np.stack(p)) for p in pieces if len(p) >= min_length]


def _episode(images: np.ndarray) -> dict[str, np.ndarray]:
    steps = len(images)
    first = np.zeros(steps, bool)
    first[0] = True
    return {"image": images, "action": np.zeros((steps, 0), np.float32),
            "reward": np.zeros(steps, np.float32), "is_first": first,
            "is_terminal": np.zeros(steps, bool)}  # fmt: skip


def write_video(path: Path, frames: np.ndarray, fps: int = 15) -> None:
    """Write (T, H, W, 3) uint8 RGB frames as an mp4 (MPEG-4 part 2), atomically (temp + rename)."""
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    h, w = frames.shape[1:3]
    writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h))
    if not writer.isOpened():
        raise UserError(f"cannot write the video {path}: OpenCV has no mp4 encoder here")
    try:
        for frame in frames:
            writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    finally:
        writer.release()
    tmp.replace(path)
