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

from rlkd.analysis.events import Curve, RunData, event_files, load_run
from rlkd.analysis.grouping import GroupRow, MetricSummary, Report, expand_paths
from rlkd.analysis.numerics import Band, align, confidence_band, lower_is_better, resample, t_quantile_975
from rlkd.analysis.output import format_table, human_duration, human_steps
from rlkd.analysis.reporting import report

__all__ = [
    "Band", "Curve", "GroupRow", "MetricSummary", "Report", "RunData", "align", "confidence_band",
    "event_files", "expand_paths", "format_table", "human_duration", "human_steps", "load_run",
    "lower_is_better", "report", "resample", "t_quantile_975",
]  # fmt: skip
