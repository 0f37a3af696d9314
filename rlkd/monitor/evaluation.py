"""``rlkd monitor eval``: how well each rule's alarms predict the failures of a run's policy on an env.

Per episode: each rule's first alarm step (or none) and whether the episode failed (did not
succeed). Per rule, over episodes: accuracy (alarm == failure), the true-positive rate (alarmed
failures / failures), the false-positive rate (alarmed successes / successes: on the run's own env
this is the false-alarm rate that calibration bounds by alpha), the alarm rate, and the lead time
of alarmed failures (steps from the alarm to the failing step, 0 = the alarm came on that step),
each with a 95% percentile bootstrap interval over episodes. ``random`` alarms each episode with
FIPER's alarm rate, at a uniformly drawn step: the chance level; each rule's ``chance`` entry is what
an alarm independent of failure at *that rule's* alarm rate scores in expectation (TPR = FPR = the
rate), so a rule is compared with chance at its own rate.
Beside the rules, threshold-free measures of every score (:mod:`rlkd.monitor.ranking`): AUROC and
average precision of its episode statistic, and of the score at step t for a failure within the
next ``horizon`` steps, with bootstrap intervals over episodes.
Writes ``<run>/monitor/eval/<label>.json``, ``.png`` and ``.npz`` (every episode's windowed scores,
for pooling runs) and TensorBoard scalars ``monitor/<label>/<rule>_<metric>`` and
``monitor/<label>/<score>_auroc`` in ``<run>/monitor/eval/`` at the checkpoint's step.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from rlkd.errors import UserError
from rlkd.monitor.monitor import RULES, SCORES, Monitor
from rlkd.monitor.ranking import DEFAULT_HORIZON, threshold_free
from rlkd.monitor.traces import Episode
from rlkd.monitor.views import DEFAULT_VIEW
from rlkd.monitor.workflow import EVAL_SEED_OFFSET, MONITOR_DIR, load_monitor, roll_out

BOOTSTRAP = 2_000
METRICS = ("accuracy", "tpr", "fpr", "alarm_rate")
RANKING = ("auroc", "ap", "early_auroc", "early_ap")
CANDIDATE_OPTIONS = ("features", "novelty", "skip", "full_windows", "statistic")


def label_of(env_id: str, env_kwargs: dict[str, Any]) -> str:
    """A file name for an env and its kwargs."""
    name = env_id.replace("/", "_").replace(":", "_")
    if env_kwargs:
        text = json.dumps(env_kwargs, sort_keys=True, default=repr)
        name += "_" + hashlib.sha256(text.encode()).hexdigest()[:8]
    return name


def evaluate(
    run_dir: Path,
    episodes: int,
    env_id: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
    label: str | None = None,
    seed: int = 0,
    horizon: int = DEFAULT_HORIZON,
) -> dict[str, Any]:
    """Evaluate the calibrated monitor of ``run_dir`` on ``episodes`` episodes of an env.

    Raises:
        UserError: No such run or monitor, a ``horizon`` below 1, or an env the run cannot act in.
    """
    from rlkd.core.run import Run

    if horizon < 1:
        raise UserError(f"--horizon must be at least 1, got {horizon}")
    run = Run.open(run_dir)
    mon, step = load_monitor(run)  # before any episode: a foreign monitor/ costs nothing
    offset = EVAL_SEED_OFFSET + seed
    views = () if mon.cfg.features == DEFAULT_VIEW else (mon.cfg.features,)
    out = roll_out(run.path, step, env_id, env_kwargs, episodes, offset, mon.cfg.deterministic, views)
    windowed = [mon.scores(e) for e in out.episodes]
    rows = judge(mon, out.episodes, np.random.default_rng(offset), windowed)
    summary = summarise(rows)
    ranking = rank_scores(rows, windowed, horizon)
    label = label or label_of(out.env_id, out.env_kwargs)
    folder = run.path / MONITOR_DIR / "eval"
    folder.mkdir(parents=True, exist_ok=True)
    record = {
        "run": str(run.path),
        "env_id": out.env_id,
        "env_kwargs": out.env_kwargs,
        "label": label,
        "checkpoint_step": step,
        "alpha": mon.cfg.alpha,
        "window": mon.cfg.window,
        "monitor": {k: getattr(mon.cfg, k) for k in CANDIDATE_OPTIONS},
        "horizon": horizon,
        "episodes": len(rows),
        "success_rate": _success_rate(out.episodes),
        "rules": summary,
        "scores": ranking,
        "per_episode": rows,
    }
    (folder / f"{label}.json").write_text(json.dumps(record, indent=1, default=repr) + "\n")
    save_traces(folder / f"{label}.npz", windowed, rows)
    plot(mon, windowed, rows, ranking, folder / f"{label}.png", title=f"{out.env_id} {out.env_kwargs or ''}")
    _log_tensorboard(folder, step, label, summary, ranking)
    return record


def rank_scores(
    rows: list[dict[str, Any]], windowed: list[dict[str, np.ndarray]], horizon: int, seed: int = 0
) -> dict[str, Any] | None:
    """Every score's threshold-free measures (:func:`rlkd.monitor.ranking.threshold_free`) over the
    judged episodes; None for envs that report no success (nothing to rank against)."""
    if not rows or rows[0]["failed"] is None:
        return None
    failed = [bool(r["failed"]) for r in rows]
    per_score = {name: [w[name] for w in windowed] for name in SCORES}
    stats = {name: np.array([r["statistic"][name] for r in rows]) for name in SCORES}
    result = threshold_free(per_score, stats, failed, horizon, seed=seed)
    positives = sum(min(r["length"], horizon) for r in rows if r["failed"])
    negatives = sum(r["length"] for r in rows if not r["failed"])
    # What a score that knows nothing gets: AUROC 0.5, AP the share of positives.
    early = positives / (positives + negatives) if positives + negatives else float("nan")
    chance = {"auroc": 0.5, "ap": float(np.mean(failed)), "early_ap": early}
    return {"chance": chance, **result}


def save_traces(path: Path, windowed: list[dict[str, np.ndarray]], rows: list[dict[str, Any]]) -> None:
    """Every episode's windowed scores, concatenated, with each episode's start and failure flag."""
    lengths = np.array([r["length"] for r in rows], np.int64)
    arrays = {f"score_{n}": np.concatenate([w[n] for w in windowed] or [np.zeros(0)]) for n in SCORES}
    failed = np.array([-1 if r["failed"] is None else int(r["failed"]) for r in rows], np.int8)
    np.savez_compressed(path, starts=np.r_[0, np.cumsum(lengths)[:-1]].astype(np.int64), lengths=lengths,
                        failed=failed, **arrays)  # fmt: skip


def _success_rate(episodes: list[Episode]) -> float | None:
    flags = [e.success for e in episodes if e.success is not None]
    return float(np.mean(flags)) if flags else None


def judge(
    mon: Monitor, episodes: list[Episode], rng: np.random.Generator,
    windowed: list[dict[str, np.ndarray]] | None = None,
) -> list[dict[str, Any]]:  # fmt: skip
    """Per episode: length, return, failure, each rule's first alarm step (``random`` included) and
    each score's episode statistic (``windowed``: the episodes' :meth:`Monitor.scores`, if at hand)."""
    windowed = windowed if windowed is not None else [mon.scores(e) for e in episodes]
    rows = [
        {"length": e.length, "return": e.ret, "failed": e.failed, "alarm": mon.alarms(w),
         "statistic": mon.statistics(w)}
        for e, w in zip(episodes, windowed, strict=True)
    ]  # fmt: skip
    rate = np.mean([r["alarm"]["fiper"] is not None for r in rows]) if rows else 0.0
    for r in rows:
        r["alarm"]["random"] = int(rng.integers(r["length"])) if rng.random() < rate else None
    return rows


def _rule_metrics(alarm: np.ndarray, failed: np.ndarray | None) -> dict[str, float]:
    out = {"alarm_rate": float(alarm.mean())}
    if failed is not None:
        out["accuracy"] = float((alarm == failed).mean())
        out["tpr"] = float(alarm[failed].mean()) if failed.any() else float("nan")
        out["fpr"] = float(alarm[~failed].mean()) if (~failed).any() else float("nan")
    return out


def summarise(rows: list[dict[str, Any]], seed: int = 0) -> dict[str, dict[str, Any]]:
    """Each rule's metrics with 95% bootstrap intervals over episodes, and its lead times."""
    if not rows:
        raise UserError("no episodes to judge")
    known = rows[0]["failed"] is not None
    failed = np.array([bool(r["failed"]) for r in rows]) if known else None
    lengths = np.array([r["length"] for r in rows])
    rng = np.random.default_rng(seed)
    draws = rng.integers(len(rows), size=(BOOTSTRAP, len(rows)))
    result: dict[str, dict[str, Any]] = {}
    for rule in [*RULES, "random"]:
        steps = np.array([-1 if r["alarm"][rule] is None else r["alarm"][rule] for r in rows])
        alarm = steps >= 0
        point = _rule_metrics(alarm, failed)
        boots = [_rule_metrics(alarm[d], None if failed is None else failed[d]) for d in draws]
        entry: dict[str, Any] = {}
        for name, value in point.items():
            values = np.array([b[name] for b in boots])
            lo, hi = np.nanpercentile(values, [2.5, 97.5]) if np.isfinite(values).any() else (np.nan, np.nan)
            entry[name] = {"value": value, "ci95": [float(lo), float(hi)]}
        if failed is not None:
            # An alarm independent of failure at this rule's rate: TPR = FPR = rate in expectation.
            rate, share = point["alarm_rate"], float(failed.mean())
            entry["chance"] = {"tpr": rate, "fpr": rate, "accuracy": rate * share + (1 - rate) * (1 - share)}
            lead = (lengths - 1 - steps)[alarm & failed]
            entry["lead_time"] = {
                "median": float(np.median(lead)) if len(lead) else None,
                "mean": float(lead.mean()) if len(lead) else None,
                "n": len(lead),
            }
        result[rule] = entry
    return result


def plot(
    mon: Monitor, windowed: list[dict[str, np.ndarray]], rows: list[dict[str, Any]],
    ranking: dict[str, Any] | None, path: Path, title: str, most: int = 30,
) -> None:  # fmt: skip
    """FIPER's two windowed scores over time for up to ``most`` episodes (thresholds dashed, failed
    episodes red, each FIPER alarm a black dot) and every score's AUROC with its interval."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 3.6))
    for scores, r in list(zip(windowed, rows, strict=True))[:most]:
        colour = "tab:red" if r["failed"] else "tab:grey"
        for ax, name in zip(axes[:2], RULES["fiper"], strict=True):
            ax.plot(scores[name], color=colour, alpha=0.5, lw=0.8)
            t = r["alarm"]["fiper"]
            if t is not None:
                ax.plot([t], [scores[name][t]], "k.", ms=5)
    for ax, name in zip(axes[:2], RULES["fiper"], strict=True):
        ax.axhline(mon.thresholds[name], color="k", ls="--", lw=1)
        ax.set(xlabel="step", ylabel=f"{name} (window {mon.cfg.window})", yscale="log")
    _plot_auroc(axes[2], ranking)
    fig.suptitle(f"{title}: red = failed, grey = succeeded, dot = alarm", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _plot_auroc(ax: Any, ranking: dict[str, Any] | None) -> None:
    """Each score's AUROC (episode statistic, and early warning) with 95% intervals; chance dashed."""
    if ranking is None:
        ax.text(0.5, 0.5, "no success flags: nothing to rank", ha="center", va="center")
        ax.set_axis_off()
        return
    x = np.arange(len(SCORES))
    for shift, key, colour in ((-0.18, "auroc", "tab:blue"), (0.18, "early_auroc", "tab:orange")):
        values = np.array([ranking[s][key]["value"] for s in SCORES])
        ci = np.array([ranking[s][key]["ci95"] for s in SCORES]).T
        err = np.abs(np.nan_to_num(ci - values, nan=0.0))
        ax.bar(x + shift, values, 0.36, yerr=err, color=colour, capsize=2,
               label="episode statistic" if key == "auroc" else "early warning")  # fmt: skip
    ax.axhline(0.5, color="k", ls="--", lw=1)
    ax.set(xticks=x, ylim=(0, 1), ylabel="AUROC (failure vs success)")
    ax.set_xticklabels(SCORES, rotation=20, fontsize=8)
    ax.legend(fontsize=7)


def _log_tensorboard(
    folder: Path, step: int, label: str, summary: dict[str, dict[str, Any]], ranking: dict[str, Any] | None
) -> None:
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(folder))
    try:
        for rule, entry in summary.items():
            for name in METRICS:
                if name in entry and np.isfinite(entry[name]["value"]):
                    writer.add_scalar(f"monitor/{label}/{rule}_{name}", entry[name]["value"], step)
            lead = entry.get("lead_time", {}).get("median")
            if lead is not None:
                writer.add_scalar(f"monitor/{label}/{rule}_lead_time", lead, step)
        for score in SCORES if ranking else ():
            for name in RANKING:
                value = ranking[score][name]["value"]  # type: ignore[index]
                if np.isfinite(value):
                    writer.add_scalar(f"monitor/{label}/{score}_{name}", value, step)
    finally:
        writer.close()
