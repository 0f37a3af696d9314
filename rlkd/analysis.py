"""``rlkd report``: read run folders' TensorBoard scalars into tables, learning-curve plots and CSV.

Event files are read with TensorBoard's own ``EventAccumulator`` (all scalar points kept), so a
resumed run whose writer used ``purge_step`` shows each step once, and a run that is still being
written is read up to its last complete record.

Statistics, stated once so that table, plots and CSV agree:

* **Duplicate steps.** Several values logged at one step (e.g. two episodes ending in the same
  vector step) are averaged into one point at that step.
* **Final value** of a run: its value at its last logged step -- no smoothing. The table shows the
  mean ± sample standard deviation (``ddof=1``) of these over the runs of a group.
* **Best value** of a run: its maximum (minimum for ``losses/*`` and tags containing ``loss``);
  the table shows the mean over runs.
* **Alignment** (:func:`align`): runs logged at different steps are linearly interpolated onto a
  common grid that starts where every run has data and stops at the smallest last step of any
  run -- never extrapolated past either end of any run.
* **Band**: 95% confidence interval of the mean over seeds, ``mean ± t(0.975, n-1) · s / sqrt(n)``
  (Student t, ``s`` the ``ddof=1`` standard deviation). One seed: no band.
  Plots clip the band of ``success_rate`` tags to [0, 1]; the CSV keeps the unclipped interval.
  With 2 seeds ``t = 12.7``: the band is honestly wide -- run more seeds rather than shrink it.
* **Wall time** is *active* training time: time between a run's first and last logged points,
  minus the pauses between a resumed run's sessions (a new event file starting marks a session).
"""

from __future__ import annotations

import csv
import glob
import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlkd.errors import UserError
from rlkd.paths import make_dir

DEFAULT_METRICS: tuple[str, ...] = ("charts/episodic_return", "charts/success_rate", "charts/SPS")
"""Key metrics the table shows when no ``--metric`` is given (those that some run logged)."""
DEFAULT_GROUP_BY: tuple[str, ...] = ("env_id", "agent", "intrinsic")
MISSING = "-"
"""Group value used when a run's config lacks a group field (e.g. ``intrinsic`` for Dreamer)."""

_EVENT_GLOB = "events.out.tfevents.*"
# torch/tensorboard name event files events.out.tfevents.<unix seconds>.<host>.<pid>.<n>
_EVENT_TIME = re.compile(r"^events\.out\.tfevents\.(\d+)\.")
_RUN_NAME = re.compile(r"^(?P<env_id>.+)__(?P<agent>[^_]+(?:_[^_]+)*)__(?P<seed>-?\d+)__\d{8}-\d{6}$")
_GLOB_CHARS = re.compile(r"[*?\[]")

# Two-sided 95% Student-t quantiles t(0.975, df) for df = 1..30 (standard tables).
_T975 = (
    12.7062, 4.3027, 3.1824, 2.7764, 2.5706, 2.4469, 2.3646, 2.3060, 2.2622, 2.2281,
    2.2010, 2.1788, 2.1604, 2.1448, 2.1314, 2.1199, 2.1098, 2.1009, 2.0930, 2.0860,
    2.0796, 2.0739, 2.0687, 2.0639, 2.0595, 2.0555, 2.0518, 2.0484, 2.0452, 2.0423,
)  # fmt: skip


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
    return sorted(path.glob(_EVENT_GLOB), key=lambda p: (_file_start(p) or 0, p.name))


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
        raise UserError(f"{path} holds no TensorBoard event files ({_EVENT_GLOB}); give a run folder")
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
    from rlkd.config import read_yaml

    if (path / "config.yaml").is_file():
        return read_yaml(path / "config.yaml")
    m = _RUN_NAME.match(path.name)  # a folder copied without its config still names env/agent/seed
    return {k: v for k, v in m.groupdict().items()} if m else {}


# ===================================================================== numerics
def align(curves: list[tuple[np.ndarray, np.ndarray]], points: int) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate runs logged at different x (steps or seconds) onto one common grid.

    The grid has ``points`` evenly spaced x from the largest first x of any run to the smallest last
    x of any run, so every grid point lies inside every run's logged range: values are linearly
    interpolated between each run's neighbouring points and never extrapolated before a run's first
    or after its last point (that would invent data). Runs that go further are cut at the shortest.

    Args:
        curves: One ``(x, y)`` pair per run, ``x`` strictly increasing, both of shape ``(n_i,)``.
        points: Number of grid points (at least 1; 1 when the common range is a single x).

    Returns:
        ``grid`` of shape ``(points,)`` and ``values`` of shape ``(n_runs, points)``.

    Raises:
        ValueError: If there are no curves, a curve is empty, or the runs' x ranges do not overlap.
    """
    if not curves or any(len(x) == 0 for x, _ in curves):
        raise ValueError("align needs at least one non-empty curve")
    lo = max(float(x[0]) for x, _ in curves)
    hi = min(float(x[-1]) for x, _ in curves)
    if lo > hi:
        raise ValueError(
            f"runs do not overlap: the latest first point ({lo:g}) is after the earliest end ({hi:g})"
        )
    grid = np.array([lo]) if lo == hi else np.linspace(lo, hi, max(int(points), 2))
    return grid, resample(curves, grid)


def resample(curves: list[tuple[np.ndarray, np.ndarray]], grid: np.ndarray) -> np.ndarray:
    """Linear interpolation of each run at ``grid``; NaN where ``grid`` is outside a run's range.

    Args:
        curves: One ``(x, y)`` pair per run, ``x`` strictly increasing.
        grid: The x at which to evaluate, shape ``(m,)``.

    Returns:
        Values of shape ``(n_runs, m)``.
    """
    out = np.full((len(curves), len(grid)), np.nan)
    for i, (x, y) in enumerate(curves):
        x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
        inside = (grid >= x[0]) & (grid <= x[-1])
        out[i, inside] = np.interp(grid[inside], x, y)
    return out


def t_quantile_975(df: int) -> float:
    """Student-t quantile ``t(0.975, df)`` (two-sided 95%): table up to 30, Cornish-Fisher beyond."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = 1.959963984540054  # normal 0.975 quantile; the series below is accurate to ~1e-5 for df > 30
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    )


@dataclass(frozen=True)
class Band:
    """Mean over runs with its 95% t confidence interval, per grid point (NaN where no run has data).

    Attributes:
        mean: Mean over runs. Shape ``(m,)``.
        std: Sample standard deviation over runs (``ddof=1``); NaN with fewer than two runs.
        lower: ``mean - t(0.975, n-1) * std / sqrt(n)``; NaN with fewer than two runs.
        upper: ``mean + t(0.975, n-1) * std / sqrt(n)``; NaN with fewer than two runs.
        n: Number of runs with data at each grid point.
    """

    mean: np.ndarray
    std: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    n: np.ndarray


def confidence_band(values: np.ndarray) -> Band:
    """95% confidence interval of the mean over runs (rows) at each grid point (columns).

    Args:
        values: Shape ``(n_runs, m)``; NaN marks "no data" and is left out of that column.
    """
    n = np.sum(~np.isnan(values), axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        total = np.nansum(values, axis=0)
        mean = np.where(n > 0, total / np.maximum(n, 1), np.nan)
        sq = np.nansum((values - mean) ** 2, axis=0)
        std = np.where(n > 1, np.sqrt(sq / np.maximum(n - 1, 1)), np.nan)
    t = np.array([t_quantile_975(int(k) - 1) if k > 1 else np.nan for k in n])
    half = t * std / np.sqrt(np.maximum(n, 1))
    return Band(mean, std, mean - half, mean + half, n)


def lower_is_better(tag: str) -> bool:
    """Whether the best value of ``tag`` is its minimum (losses) rather than its maximum."""
    return tag.startswith("losses/") or "loss" in tag.rsplit("/", 1)[-1].lower()


# ===================================================================== report
@dataclass
class MetricSummary:
    """Final and best value of one metric over the runs of a group that logged it.

    Attributes:
        n: Number of runs that logged the metric.
        finals: Each run's value at its last logged step.
        bests: Each run's best value (max; min for losses).
        final_mean: Mean of ``finals``.
        final_std: Sample standard deviation of ``finals`` (``ddof=1``; NaN for one run).
        best_mean: Mean of ``bests``.
    """

    n: int
    finals: list[float]
    bests: list[float]
    final_mean: float
    final_std: float
    best_mean: float


@dataclass
class GroupRow:
    """One row of the report table: a group of runs that share the group-by config fields.

    Attributes:
        name: The group's field values joined by spaces (``CartPole-v1 ppo rnd``).
        fields: Group-by field -> value (``-`` when the config lacks the field).
        runs: The run folders in the group.
        seeds: Number of runs pooled (normally one per seed).
        steps_min: Smallest last step among the runs.
        steps_max: Largest last step among the runs.
        wall_time_s: Mean active wall time of the runs, seconds.
        sps: Mean over runs of the last logged ``charts/SPS`` (steps / active wall time if not logged).
        metrics: Tag -> summary, for the report's metrics that some run of the group logged.
    """

    name: str
    fields: dict[str, str]
    runs: list[Path]
    seeds: int
    steps_min: int
    steps_max: int
    wall_time_s: float
    sps: float
    metrics: dict[str, MetricSummary] = field(default_factory=dict)


@dataclass
class Report:
    """What :func:`report` found and wrote.

    Attributes:
        rows: One per group, in order of first appearance.
        metrics: The tags reported.
        out: Folder the files were written to.
        files: Every PNG and CSV written.
        notes: Warnings worth showing (runs lacking a metric, groups that could not be aligned).
        text: The terminal table (with notes), ready to print.
    """

    rows: list[GroupRow]
    metrics: list[str]
    out: Path
    files: list[Path]
    notes: list[str]
    text: str

    def __str__(self) -> str:
        return self.text

    def row(self, name: str) -> GroupRow:
        """The row of group ``name`` (raises ``KeyError`` if absent)."""
        for r in self.rows:
            if r.name == name:
                return r
        raise KeyError(f"no group {name!r}; groups: {[r.name for r in self.rows]}")


def expand_paths(paths: Sequence[str | Path]) -> list[Path]:
    """Turn run folders, runs roots and glob patterns into a list of run folders with event files.

    A folder without event files of its own but with run folders inside (``runs/``) stands for those
    runs. Glob matches without event files (such as ``runs/report``) are skipped.

    Raises:
        UserError: If a path does not exist, a pattern matches nothing usable, or a given folder
            (and its subfolders) holds no event files.
    """
    found: list[Path] = []
    for given in paths:
        text = str(given)
        if _GLOB_CHARS.search(text):
            matches = [Path(m) for m in sorted(glob.glob(text)) if Path(m).is_dir()]
            runs = [r for m in matches for r in _runs_in(m)]
            if not runs:
                raise UserError(f"no run folder with TensorBoard event files matches {text!r}")
        else:
            p = Path(text)
            if not p.exists():
                raise UserError(f"{p} does not exist; give run folders or glob patterns like 'runs/*'")
            if not p.is_dir():
                raise UserError(f"{p} is not a folder; give run folders or glob patterns like 'runs/*'")
            runs = _runs_in(p)
            if not runs:
                raise UserError(
                    f"{p} holds no TensorBoard event files ({_EVENT_GLOB}), nor do its subfolders"
                )
        found.extend(runs)
    unique: dict[Path, Path] = {}
    for r in found:
        unique.setdefault(r.resolve(), r)
    if not unique:
        raise UserError("no run folders given")
    return list(unique.values())


def _runs_in(folder: Path) -> list[Path]:
    if event_files(folder):
        return [folder]
    return sorted(d for d in folder.iterdir() if d.is_dir() and event_files(d))


def report(
    paths: Sequence[str | Path],
    out: Path | None = None,
    metrics: Sequence[str] | None = None,
    group_by: Sequence[str] = DEFAULT_GROUP_BY,
    points: int = 200,
) -> Report:
    """Summarise runs: terminal table, learning-curve PNGs and CSV files.

    Args:
        paths: Run folders, folders of run folders (``runs/``) or glob patterns (``'runs/Cart*'``).
        out: Folder for the PNG/CSV files; default ``<first run's parent>/report``.
        metrics: Scalar tags to report (a unique suffix such as ``episodic_return`` also works);
            default: those of :data:`DEFAULT_METRICS` that some run logged.
        group_by: Config fields whose values define a group; runs differing only in other fields
            (seed above all) are pooled.
        points: Number of grid points of the aligned curves and CSV rows.

    Returns:
        The table rows, files written and the printable text (the caller prints ``.text``).

    Raises:
        UserError: No event files in a given folder, or a requested metric that no run logged
            (the message lists the tags present).

    For each metric it writes ``<tag>_steps.png`` (mean and 95% CI vs environment steps),
    ``<tag>_walltime.png`` (the same vs active wall time), and ``<tag>.csv`` (columns ``step``, then
    per group ``mean, std, lower, upper, n``); plus ``summary.csv`` with the table. ``/`` in tags
    becomes ``_`` in file names.
    """
    if points < 1:
        raise UserError(f"points must be at least 1, got {points}")
    runs = [load_run(p) for p in expand_paths(paths)]
    present = sorted({t for r in runs for t in r.scalars})
    if not present:
        raise UserError(
            f"none of the {len(runs)} run(s) has logged a scalar yet ({', '.join(str(r.path) for r in runs)})"
        )
    tags = _resolve_metrics(metrics, present)
    notes: list[str] = []

    groups: dict[tuple[str, ...], list[RunData]] = {}
    for r in runs:
        key = tuple(
            str(r.config.get(f, MISSING)) if r.config.get(f) not in (None, "") else MISSING for f in group_by
        )
        groups.setdefault(key, []).append(r)

    rows = [_group_row(key, members, group_by, tags, notes) for key, members in groups.items()]
    out = Path(out) if out is not None else runs[0].path.parent / "report"
    make_dir(out, "--out")

    files: list[Path] = []
    labels = _legend_labels(rows, group_by)
    common = _common_fields(rows, group_by)
    for tag in tags:
        per_group = [
            (row, [r.scalars[tag] for r in groups[_key(row, group_by)] if tag in r.scalars]) for row in rows
        ]
        per_group = [(row, cs) for row, cs in per_group if cs]
        files.append(_write_csv(out, tag, per_group, points))
        for axis in ("steps", "walltime"):
            png = _plot(out, tag, axis, per_group, labels, common, points, notes)
            files.append(png)
    files.append(_write_summary(out, rows, tags, group_by))

    text = format_table(rows, tags)
    if notes:
        text += "\n" + "\n".join(f"note: {n}" for n in notes)
    text += f"\nwrote {len(files)} files to {out}"
    return Report(rows, tags, out, files, notes, text)


def _key(row: GroupRow, group_by: Sequence[str]) -> tuple[str, ...]:
    return tuple(row.fields[f] for f in group_by)


def _resolve_metrics(metrics: Sequence[str] | None, present: list[str]) -> list[str]:
    if not metrics:
        tags = [t for t in DEFAULT_METRICS if t in present]
        if not tags:
            raise UserError(
                f"no run logged any of the key metrics {', '.join(DEFAULT_METRICS)}; tags present: "
                f"{', '.join(present)}; choose with --metric TAG"
            )
        return tags
    tags = []
    for m in metrics:
        if m in present:
            tags.append(m)
            continue
        # A unique suffix is accepted: `--metric episodic_return` means charts/episodic_return.
        suffix = [t for t in present if t.endswith("/" + m.lstrip("/"))]
        if len(suffix) == 1:
            tags.append(suffix[0])
            continue
        raise UserError(f"no run logged the metric {m!r}; tags present: {', '.join(present)}")
    return list(dict.fromkeys(tags))


def _group_row(
    key: tuple[str, ...], members: list[RunData], group_by: Sequence[str], tags: list[str], notes: list[str]
) -> GroupRow:
    name = " ".join(key)
    seeds = [str(r.config.get("seed", MISSING)) for r in members]
    if len(set(seeds)) < len(seeds) and MISSING not in seeds:
        notes.append(f"group {name!r} pools {len(seeds)} runs but only seeds {sorted(set(seeds))}")
    sps = []
    for r in members:
        logged = r.scalars.get("charts/SPS")
        if logged is not None:
            # rlkd's agents log cumulative steps/s since the (re)start: the last value is the run's
            # rate, while a mean would over-weight fast phases such as Dreamer's random prefill.
            sps.append(float(logged.values[-1]))
        elif r.wall_time_s > 0:
            sps.append(r.last_step / r.wall_time_s)
    row = GroupRow(
        name=name,
        fields=dict(zip(group_by, key, strict=True)),
        runs=[r.path for r in members],
        seeds=len(members),
        steps_min=min(r.last_step for r in members),
        steps_max=max(r.last_step for r in members),
        wall_time_s=float(np.mean([r.wall_time_s for r in members])),
        sps=float(np.mean(sps)) if sps else math.nan,
    )
    for tag in tags:
        have = [r for r in members if tag in r.scalars]
        if len(have) < len(members):
            missing = ", ".join(r.path.name for r in members if tag not in r.scalars)
            notes.append(
                f"{tag}: group {name!r} has {len(have)}/{len(members)} runs with it (missing: {missing})"
            )
        if not have:
            continue
        pick = np.min if lower_is_better(tag) else np.max
        finals = [float(r.scalars[tag].values[-1]) for r in have]
        bests = [float(pick(r.scalars[tag].values)) for r in have]
        row.metrics[tag] = MetricSummary(
            n=len(have),
            finals=finals,
            bests=bests,
            final_mean=float(np.mean(finals)),
            final_std=float(np.std(finals, ddof=1)) if len(finals) > 1 else math.nan,
            best_mean=float(np.mean(bests)),
        )
    return row


def _common_fields(rows: list[GroupRow], group_by: Sequence[str]) -> dict[str, str]:
    """Group fields with one value across all groups (shown in titles, not in every legend entry)."""
    if len(rows) < 2:
        return {}
    return {f: rows[0].fields[f] for f in group_by if len({r.fields[f] for r in rows}) == 1}


def _legend_labels(rows: list[GroupRow], group_by: Sequence[str]) -> dict[str, str]:
    common = _common_fields(rows, group_by)
    return {
        r.name: " ".join(v for f, v in r.fields.items() if f not in common and v != MISSING) or r.name
        for r in rows
    }


# ===================================================================== text table
def human_steps(x: float, _pos: object = None) -> str:
    """``1_234_567 -> '1.23M'``, ``50_000 -> '50k'``: compact step counts for axes and tables."""
    for div, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{suffix}"
    return f"{x:.0f}"


def human_duration(seconds: float) -> str:
    """``42 -> '42s'``, ``754 -> '12.6min'``, ``9000 -> '2.50h'``."""
    if not math.isfinite(seconds):
        return MISSING
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.1f}min"
    return f"{seconds / 3600:.2f}h"


def _num(x: float) -> str:
    return MISSING if not math.isfinite(x) else f"{x:.4g}"


def format_table(rows: list[GroupRow], tags: list[str]) -> str:
    """The terminal table: one line per group; ``final`` is mean ± std over seeds, ``best`` a mean."""
    shown = [t for t in tags if t != "charts/SPS"]  # SPS has its own column
    header = ["group", "seeds", "steps", "wall", "SPS"]
    for t in shown:
        short = t.removeprefix("charts/")
        header += [f"{short} final", f"{short} best"]
    lines = [header]
    for r in rows:
        steps = human_steps(r.steps_min) + (
            "" if r.steps_min == r.steps_max else f"-{human_steps(r.steps_max)}"
        )
        cells = [r.name, str(r.seeds), steps, human_duration(r.wall_time_s), _num(r.sps)]
        for t in shown:
            m = r.metrics.get(t)
            if m is None:
                cells += [MISSING, MISSING]
                continue
            final = _num(m.final_mean) + ("" if math.isnan(m.final_std) else f" ± {m.final_std:.3g}")
            if m.n < r.seeds:
                final += f" (n={m.n})"
            cells += [final, _num(m.best_mean)]
        lines.append(cells)
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = [
        "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(line, widths, strict=True))
        )
        for line in lines
    ]
    text.insert(1, "  ".join("-" * w for w in widths))
    text.append(
        "final: mean ± std (ddof=1) over seeds of each run's last logged value (no smoothing); "
        "best: mean over seeds of each run's max (min for losses); wall: active training time"
    )
    return "\n".join(text)


# ===================================================================== files
def _slug(tag: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", tag).strip("_")


def _fmt(x: float) -> str:
    return "" if not math.isfinite(x) else f"{x:.10g}"


def _write_csv(out: Path, tag: str, per_group: list[tuple[GroupRow, list[Curve]]], points: int) -> Path:
    """One grid over the union of the groups' aligned ranges; a group's cells are empty outside its own."""
    ranges = []
    for _, curves in per_group:
        lo, hi = max(float(c.steps[0]) for c in curves), min(float(c.steps[-1]) for c in curves)
        ranges.append((lo, hi))
    valid = [(lo, hi) for lo, hi in ranges if lo <= hi]
    lo = min((r[0] for r in valid), default=0.0)
    hi = max((r[1] for r in valid), default=0.0)
    grid = np.array([lo]) if lo == hi else np.linspace(lo, hi, max(points, 2))
    columns = []
    for (_, curves), (glo, ghi) in zip(per_group, ranges, strict=True):
        values = resample([(c.steps, c.values) for c in curves], grid)
        values[:, (grid < glo) | (grid > ghi)] = np.nan  # only where every run of the group has data
        columns.append(confidence_band(values))
    path = out / f"{_slug(tag)}.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(
            ["step"]
            + [f"{row.name} {k}" for row, _ in per_group for k in ("mean", "std", "lower", "upper", "n")]
        )
        for j, x in enumerate(grid):
            line = [_fmt(x)]
            for b in columns:
                n = int(b.n[j])
                line += [
                    _fmt(b.mean[j]),
                    _fmt(b.std[j]),
                    _fmt(b.lower[j]),
                    _fmt(b.upper[j]),
                    str(n) if n else "",
                ]
            w.writerow(line)
    return path


def _write_summary(out: Path, rows: list[GroupRow], tags: list[str], group_by: Sequence[str]) -> Path:
    path = out / "summary.csv"
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        head = ["group", *group_by, "seeds", "steps_min", "steps_max", "wall_time_s", "sps"]
        for t in tags:
            head += [f"{t} final_mean", f"{t} final_std", f"{t} best_mean", f"{t} n"]
        w.writerow(head)
        for r in rows:
            line = [
                r.name,
                *(r.fields[f] for f in group_by),
                r.seeds,
                r.steps_min,
                r.steps_max,
                _fmt(r.wall_time_s),
                _fmt(r.sps),
            ]
            for t in tags:
                m = r.metrics.get(t)
                line += (
                    ["", "", "", 0]
                    if m is None
                    else [_fmt(m.final_mean), _fmt(m.final_std), _fmt(m.best_mean), m.n]
                )
            w.writerow(line)
    return path


def _plot(
    out: Path,
    tag: str,
    axis: str,
    per_group: list[tuple[GroupRow, list[Curve]]],
    labels: dict[str, str],
    common: dict[str, str],
    points: int,
    notes: list[str],
) -> Path:
    """One figure: per group, the aligned mean curve and its 95% CI band (no band for one seed)."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    if axis == "steps":
        xs = [[c.steps.astype(np.float64) for c in cs] for _, cs in per_group]
        scale, xlabel = 1.0, "environment steps"
    else:
        xs = [[c.wall for c in cs] for _, cs in per_group]
        longest = max((float(x[-1]) for group in xs for x in group), default=0.0)
        scale, unit = (1.0, "s") if longest < 120 else (60.0, "min") if longest < 7200 else (3600.0, "h")
        xlabel = f"wall-clock training time ({unit})"

    with plt.rc_context(
        {
            "font.size": 11,
            "axes.titlesize": 12,
            "axes.labelsize": 11,
            "legend.fontsize": 9.5,
            "axes.spines.top": False,
            "axes.spines.right": False,
        }
    ):
        fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=150, layout="constrained")
        colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
        for i, ((row, curves), group_x) in enumerate(zip(per_group, xs, strict=True)):
            pairs = [_strictly_increasing(x / scale, c.values) for x, c in zip(group_x, curves, strict=True)]
            try:
                grid, values = align(pairs, points)
            except ValueError as exc:
                notes.append(f"{tag} ({axis}): group {row.name!r} not plotted: {exc}")
                continue
            band = confidence_band(values)
            color = colors[i % len(colors)]
            label = f"{labels[row.name]} (n={len(curves)})"
            marker = "o" if len(grid) == 1 else None
            ax.plot(grid, band.mean, color=color, lw=1.8, label=label, marker=marker)
            if len(curves) > 1:
                lower, upper = band.lower, band.upper
                if tag.rsplit("/", 1)[-1] == "success_rate":  # a rate: the band is drawn inside [0, 1]
                    lower, upper = np.clip(lower, 0.0, 1.0), np.clip(upper, 0.0, 1.0)
                ax.fill_between(grid, lower, upper, color=color, alpha=0.2, lw=0)
        ax.set_xlabel(xlabel)
        ax.set_ylabel(tag.rsplit("/", 1)[-1].replace("_", " "))
        context = " ".join(v for v in common.values() if v != MISSING)
        title = tag + (f"  —  {context}" if context else "")
        ax.set_title(title, loc="left")
        if axis == "steps":
            ax.xaxis.set_major_formatter(FuncFormatter(human_steps))
        ax.set_xlim(left=0)
        ax.grid(True, alpha=0.3, lw=0.6)
        if ax.get_legend_handles_labels()[0]:
            varying = [f for f in per_group[0][0].fields if f not in common] if len(per_group) > 1 else []
            what = f"{', '.join(varying)}: " if varying else ""
            banded = any(len(cs) > 1 for _, cs in per_group)
            stat = "mean and 95% CI over seeds" if banded else "one seed each: no confidence band"
            leg = ax.legend(loc="best", frameon=False, title=f"{what}{stat}")
            leg.get_title().set_fontsize(8.5)
        path = out / f"{_slug(tag)}_{axis}.png"
        fig.savefig(path)
        plt.close(fig)
    return path


def _strictly_increasing(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep the last point of each run of equal x (wall times of quickly logged steps can tie)."""
    x = np.maximum.accumulate(x)  # a clock never runs backwards
    keep = np.append(np.diff(x) > 0, True)
    return x[keep], y[keep]
