"""The ``rlkd report`` entry point: run folders -> groups -> table, CSVs and plots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rlkd.analysis.events import RunData, load_run
from rlkd.analysis.grouping import (
    MISSING,
    GroupRow,
    Report,
    auto_group_by,
    common_fields,
    expand_paths,
    group_key,
    group_row,
    legend_labels,
    resolve_metrics,
)
from rlkd.analysis.numerics import lower_is_better, probability_of_improvement
from rlkd.analysis.output import format_table, plot_curves, plot_profile, write_csv, write_summary
from rlkd.core.paths import make_dir
from rlkd.errors import UserError


def group_runs(runs: Sequence[RunData], group_by: Sequence[str]) -> dict[tuple[str, ...], list[RunData]]:
    """Runs by their values of the ``group_by`` config fields (missing or empty: ``MISSING``)."""
    groups: dict[tuple[str, ...], list[RunData]] = {}
    for r in runs:
        key = tuple(
            str(r.config.get(f, MISSING)) if r.config.get(f) not in (None, "") else MISSING for f in group_by
        )
        groups.setdefault(key, []).append(r)
    return groups


def report(
    paths: Sequence[str | Path],
    out: Path | None = None,
    metrics: Sequence[str] | None = None,
    group_by: Sequence[str] | None = None,
    points: int = 200,
    per_seed: bool = False,
    smooth: int = 1,
) -> Report:
    """Summarise runs: terminal table, learning-curve PNGs and CSV files.

    Args:
        paths: Run folders, folders of run folders (``runs/``) or glob patterns (``'runs/Cart*'``).
        out: Folder for the PNG/CSV files; default ``<first run's parent>/report``.
        metrics: Scalar tags to report (a unique suffix such as ``episodic_return`` also works);
            default: those of :data:`DEFAULT_METRICS` that some run logged.
        group_by: Config fields whose values define a group; None: every field that differs
            between the runs except the seed and where they were written (:func:`auto_group_by`).
        points: Number of grid points of the aligned curves and CSV rows.
        per_seed: Also draw each run's curve (thin lines).
        smooth: Trailing moving average over this many logged points of each run, in plots only.

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
    tags = resolve_metrics(metrics, present)
    notes: list[str] = []
    if group_by is None:
        group_by = auto_group_by([r.config for r in runs])

    groups = group_runs(runs, group_by)
    rows = [group_row(key, members, group_by, tags, notes) for key, members in groups.items()]
    out = Path(out) if out is not None else runs[0].path.parent / "report"
    make_dir(out, "--out")

    files: list[Path] = []
    labels = legend_labels(rows, group_by)
    common = common_fields(rows, group_by)
    for tag in tags:
        per_group = [
            (row, [r.scalars[tag] for r in groups[group_key(row, group_by)] if tag in r.scalars])
            for row in rows
        ]
        per_group = [(row, cs) for row, cs in per_group if cs]
        files.append(write_csv(out, tag, per_group, points))
        for axis in ("steps", "walltime"):
            png = plot_curves(out, tag, axis, per_group, labels, common, points, per_seed, smooth)
            files.append(png)
        profile = plot_profile(out, tag, rows, labels)
        if profile is not None:
            files.append(profile)
    files.append(write_summary(out, rows, tags, group_by))

    text = f"groups by: {', '.join(group_by)} (runs differing in nothing else are pooled as seeds)\n"
    text += format_table(rows, tags)
    text += "".join(f"\n{line}" for tag in tags for line in improvement_lines(rows, tag, labels))
    if notes:
        text += "\n" + "\n".join(f"note: {n}" for n in notes)
    text += f"\nwrote {len(files)} files to {out}"
    return Report(rows, tags, out, files, notes, text)




def improvement_lines(rows: list[GroupRow], tag: str, labels: dict[str, str]) -> list[str]:
    """rliable's probability of improvement on the final values, for every pair of groups."""
    have = [r for r in rows if tag in r.metrics]
    sign = -1.0 if lower_is_better(tag) else 1.0  # for a loss, improving is being lower
    lines = []
    for i, a in enumerate(have):
        for b in have[i + 1 :]:
            x, y = (sign * np.asarray(r.metrics[tag].finals) for r in (a, b))
            p, lo, hi = probability_of_improvement(x, y)
            ci = f" (95% CI {lo:.2f}-{hi:.2f})" if np.isfinite(lo) else " (one run in a group: no CI)"
            lines.append(f"P({labels[a.name]} better than {labels[b.name]}) on final {tag}: {p:.2f}{ci}")
    return lines
