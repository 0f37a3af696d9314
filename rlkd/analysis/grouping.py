"""Runs -> groups: every config field in ``group_by`` defines a group, the seed does not."""

from __future__ import annotations

import glob
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from rlkd.analysis.events import EVENT_GLOB, RunData, event_files
from rlkd.analysis.numerics import lower_is_better
from rlkd.errors import UserError

DEFAULT_METRICS: tuple[str, ...] = ("charts/episodic_return", "charts/success_rate", "charts/SPS")
"""Key metrics the table shows when no ``--metric`` is given (those that some run logged)."""
DEFAULT_GROUP_BY: tuple[str, ...] = ("env_id", "agent", "intrinsic")
"""Fields that name a group even when every run shares them (shown in titles)."""
RUN_FIELDS = frozenset({"seed", "run_dir", "runs_root", "device", "torch_threads", "checkpoint_interval",
                        "keep_checkpoints", "log_interval", "on_nonfinite", "capture_video", "track",
                        "wandb_project"})  # fmt: skip
"""Config fields that say where and how a run was written, not what was trained: never a group."""


def auto_group_by(configs: Sequence[Mapping[str, Any]]) -> list[str]:
    """Group runs by every config field whose value differs between them, except the seed and the
    :data:`RUN_FIELDS`: runs are pooled only when they differ in nothing else (never across
    hyperparameters, presets or budgets). env_id, agent and intrinsic always name the group."""
    names = list(dict.fromkeys(k for c in configs for k in c))
    # A field differs when two runs that both have it disagree (a PPO-only field does not split PPO
    # from Dreamer runs; the agent field does).
    differing = [k for k in names if k not in RUN_FIELDS and len({repr(c[k]) for c in configs if k in c}) > 1]
    return list(dict.fromkeys([*DEFAULT_GROUP_BY, *differing]))
_GLOB_CHARS = re.compile(r"[*?\[]")
MISSING = "-"
"""Group value used when a run's config lacks a group field (e.g. ``intrinsic`` for Dreamer)."""


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
                    f"{p} holds no TensorBoard event files ({EVENT_GLOB}), nor do its subfolders"
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


def group_key(row: GroupRow, group_by: Sequence[str]) -> tuple[str, ...]:
    return tuple(row.fields[f] for f in group_by)


def resolve_metrics(metrics: Sequence[str] | None, present: list[str]) -> list[str]:
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


def group_row(
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


def common_fields(rows: list[GroupRow], group_by: Sequence[str]) -> dict[str, str]:
    """Group fields with one value across all groups (shown in titles, not in every legend entry)."""
    if len(rows) < 2:
        return {}
    return {f: rows[0].fields[f] for f in group_by if len({r.fields[f] for r in rows}) == 1}


def legend_labels(rows: list[GroupRow], group_by: Sequence[str]) -> dict[str, str]:
    common = common_fields(rows, group_by)
    return {
        r.name: " ".join(v for f, v in r.fields.items() if f not in common and v != MISSING) or r.name
        for r in rows
    }


