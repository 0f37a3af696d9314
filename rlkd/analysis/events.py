"""Event files -> :class:`RunData`: curves per tag, the run's config and its active wall time."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rlkd.errors import UserError

MISSING = "-"
"""Group value used when a run's config lacks a group field (e.g. ``intrinsic`` for Dreamer)."""

EVENT_GLOB = "events.out.tfevents.*"
# torch/tensorboard name event files events.out.tfevents.<unix seconds>.<host>.<pid>.<n>
_EVENT_TIME = re.compile(r"^events\.out\.tfevents\.(\d+)\.")
_RUN_NAME = re.compile(r"^(?P<env_id>.+)__(?P<agent>[^_]+(?:_[^_]+)*)__(?P<seed>-?\d+)__\d{8}-\d{6}$")

# ===================================================================== data read from event files
@dataclass(frozen=True)
class Curve:
    """One scalar tag of one run, one point per distinct step, sorted by step.

    Attributes:
        steps: Environment steps, strictly increasing. Shape ``(n,)``.
        values: Value at each step (the mean when a step was logged more than once). Shape ``(n,)``.
        wall: Active wall time in seconds since the run's first logged point. Shape ``(n,)``.
    """

    steps: np.ndarray
    values: np.ndarray
    wall: np.ndarray


@dataclass
class RunData:
    """What :func:`load_run` reads from one run folder.

    Attributes:
        path: The run folder.
        config: Its ``config.yaml`` (empty if absent; env/agent/seed then come from the folder name).
        scalars: Every scalar tag the run logged.
        last_step: Largest step of any logged scalar (0 when nothing is logged yet).
        wall_time_s: Active wall time up to the last logged point.
    """

    path: Path
    config: dict[str, Any]
    scalars: dict[str, Curve]
    last_step: int
    wall_time_s: float


def event_files(path: Path) -> list[Path]:
    """The TensorBoard event files directly inside ``path``, oldest session first."""
    return sorted(path.glob(EVENT_GLOB), key=lambda p: (_file_start(p) or 0, p.name))


def _file_start(path: Path) -> int | None:
    m = _EVENT_TIME.match(path.name)
    return int(m.group(1)) if m else None


def load_run(path: str | Path) -> RunData:
    """Read all scalars of one run folder with TensorBoard's ``EventAccumulator``.

    Args:
        path: A run folder holding ``events.out.tfevents.*`` files (and normally ``config.yaml``).

    Returns:
        The run's config and curves.

    Raises:
        UserError: If the folder holds no event files.
    """
    # Imported here: tensorboard's import pulls in a lot and only report needs it.
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    path = Path(path)
    files = event_files(path)
    if not files:
        raise UserError(f"{path} holds no TensorBoard event files ({EVENT_GLOB}); give a run folder")
    # scalars=0 keeps every point (the default samples 10k); other kinds are not needed at all.
    guidance = {
        "scalars": 0,
        "tensors": 1,
        "images": 1,
        "audio": 1,
        "histograms": 1,
        "compressedHistograms": 1,
    }
    # purge_orphaned_data (the default) drops points a resumed writer superseded with purge_step.
    acc = EventAccumulator(str(path), size_guidance=guidance, purge_orphaned_data=True)
    # The accumulator logs a warning for every resume purge ("likely caused by a TensorFlow restart")
    # and for a half-written last record; both are expected here, so keep them off the terminal.
    tb_logger = logging.getLogger("tensorboard")
    level = tb_logger.level
    tb_logger.setLevel(logging.ERROR)
    try:
        acc.Reload()
    finally:
        tb_logger.setLevel(level)

    raw: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    for tag in acc.Tags().get("scalars", []):
        events = acc.Scalars(tag)
        raw[tag] = (
            np.array([e.step for e in events], dtype=np.int64),
            np.array([e.wall_time for e in events], dtype=np.float64),
            np.array([e.value for e in events], dtype=np.float64),
        )
    all_walls = np.concatenate([w for _, w, _ in raw.values()]) if raw else np.zeros(0)
    clock = _ActiveClock(all_walls, [s for f in files[1:] if (s := _file_start(f)) is not None])

    scalars = {tag: _curve(steps, walls, values, clock) for tag, (steps, walls, values) in raw.items()}
    last_step = max((int(c.steps[-1]) for c in scalars.values()), default=0)
    wall_time = clock(np.array([all_walls.max()]))[0] if all_walls.size else 0.0
    return RunData(path, _read_config(path), scalars, last_step, float(wall_time))


class _ActiveClock:
    """Maps event wall times to active training seconds since the run's first logged point.

    When a run was resumed, the pause between the last surviving point of one session and the start
    of the next session's event file is not training time, so it is subtracted from later points.
    """

    def __init__(self, walls: np.ndarray, session_starts: list[int]) -> None:
        self.t0 = float(walls.min()) if walls.size else 0.0
        self.pauses: list[tuple[float, float]] = []  # (session start, seconds paused before it)
        for start in sorted(session_starts):
            before = walls[walls < start]
            if before.size:
                self.pauses.append((float(start), max(0.0, start - float(before.max()))))

    def __call__(self, walls: np.ndarray) -> np.ndarray:
        active = walls - self.t0
        for start, pause in self.pauses:
            active = active - np.where(walls >= start, pause, 0.0)
        return np.maximum(active, 0.0)


def _curve(steps: np.ndarray, walls: np.ndarray, values: np.ndarray, clock: _ActiveClock) -> Curve:
    order = np.argsort(steps, kind="stable")
    steps, walls, values = steps[order], walls[order], values[order]
    uniq, first, counts = np.unique(steps, return_index=True, return_counts=True)
    # Mean of the values logged at one step; the latest wall time of that step.
    mean = np.add.reduceat(values, first) / counts
    wall = np.maximum.reduceat(walls, first)
    return Curve(uniq, mean, clock(wall))


def _read_config(path: Path) -> dict[str, Any]:
    from rlkd.core.config import read_yaml

    if (path / "config.yaml").is_file():
        return read_yaml(path / "config.yaml")
    m = _RUN_NAME.match(path.name)  # a folder copied without its config still names env/agent/seed
    return {k: v for k, v in m.groupdict().items()} if m else {}


