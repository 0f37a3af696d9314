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
* **Groups**: runs are pooled as seeds only when their configs differ in nothing but the seed and
  where they were written (:func:`~rlkd.analysis.grouping.auto_group_by`); ``--group-by`` picks
  the fields by hand. The report's first line names the fields that define the groups.
* **Curves**: each run is linearly interpolated onto a grid from the latest first step of the
  group's runs to its longest run's last step -- never extrapolated past a run's own end, never
  cut at the shortest run (a dotted line marks where the first run of a group ends, and the legend
  gives how many runs remain there). The CSV keeps each group's range where all its runs have data,
  with the count ``n`` per row.
* **Band**: 95% percentile-bootstrap interval of the mean over seeds (``scipy.stats.bootstrap``,
  2000 resamples, fixed seed), as rliable recommends for few seeds: it never leaves the range of
  the runs' values (a Student-t band at n = 2, t = 12.7, reached -50 on CartPole). One seed: no band.
* **Comparisons** (rliable, on the runs' final values): a performance profile per metric (the
  fraction of runs above each threshold, ``<tag>_profile.png``) and, for every pair of groups, the
  probability of improvement P(X > Y) + P(X = Y)/2 with a 95% bootstrap interval.
* **Options**: ``per_seed`` draws every run's curve too; ``smooth`` averages each run over that
  many logged points in the plots (never in the table or CSV).
* **Wall time** is *active* training time: time between a run's first and last logged points,
  minus the pauses between a resumed run's sessions (a new event file starting marks a session).
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rlkd.analysis.events import Curve, RunData, event_files, load_run
    from rlkd.analysis.grouping import GroupRow, MetricSummary, Report, expand_paths
    from rlkd.analysis.numerics import Band, bootstrap_band, confidence_band, lower_is_better, resample
    from rlkd.analysis.output import format_table, human_duration, human_steps
    from rlkd.analysis.reporting import report

# Loaded on first use (PEP 562): ``rlkd eval`` imports ``rlkd.analysis.evaluate``, and importing
# the report's numerics (scipy.stats) with it would cost it ~60 MiB and a second of start-up.
_HOME = {
    "Curve": "events", "RunData": "events", "event_files": "events", "load_run": "events",
    "GroupRow": "grouping", "MetricSummary": "grouping", "Report": "grouping", "expand_paths": "grouping",
    "Band": "numerics", "bootstrap_band": "numerics", "confidence_band": "numerics",
    "lower_is_better": "numerics", "resample": "numerics",
    "format_table": "output", "human_duration": "output", "human_steps": "output",
    "report": "reporting",
}  # fmt: skip


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'rlkd.analysis' has no attribute {name!r}")
    return getattr(importlib.import_module(f"rlkd.analysis.{_HOME[name]}"), name)


__all__ = [
    "Band",
    "Curve",
    "GroupRow",
    "MetricSummary",
    "Report",
    "RunData",
    "bootstrap_band",
    "confidence_band",
    "event_files",
    "expand_paths",
    "format_table",
    "human_duration",
    "human_steps",
    "load_run",
    "lower_is_better",
    "report",
    "resample",
]  # fmt: skip
