"""Run-time failure prediction for deployed policies from distillation novelty (``rlkd monitor``).

After FIPER (Failure Prediction at Runtime, 2025): two scores calibrated on successful rollouts
only, with no failure data: the distillation novelty (RND/RDD) of the policy's own embedding and
the policy's action uncertainty, each averaged over a short window and thresholded by split
conformal prediction; an alarm is raised when both exceed their thresholds.

Modules, in the order data flows through them:

* :mod:`~rlkd.monitor.views`: what a score can read of a step (observation, hidden layers, RSSM state);
* :mod:`~rlkd.monitor.traces`: per-step records of a policy's episodes (``Policy.inspect``);
* :mod:`~rlkd.monitor.scorers`: the learned scores (novelty, the ensemble uncertainty substitute);
* :mod:`~rlkd.monitor.conformal`: windows and split-conformal thresholds;
* :mod:`~rlkd.monitor.monitor`: the scores, thresholds and alarm rules together;
* :mod:`~rlkd.monitor.workflow`: ``rlkd monitor calibrate`` (rollouts, fitting, the monitor folder);
* :mod:`~rlkd.monitor.ranking`: threshold-free measures (AUROC, AP, early warning; bootstrap intervals);
* :mod:`~rlkd.monitor.evaluation`: ``rlkd monitor eval`` (alarms against failures, plots, TensorBoard);
* :mod:`~rlkd.monitor.online`: the per-step scorer of ``rlkd.load(run).monitor()``.
"""

from rlkd.monitor.monitor import RULES, SCORES, Monitor, MonitorConfig

__all__ = ["RULES", "SCORES", "Monitor", "MonitorConfig"]
