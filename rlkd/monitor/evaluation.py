"""``rlkd monitor eval``: how well each rule's alarms predict the failures of a run's policy on an env.

Per episode: each rule's first alarm step (or none) and whether the episode failed (did not
succeed). Per rule, over episodes: accuracy (alarm == failure), the true-positive rate (alarmed
failures / failures), the false-positive rate (alarmed successes / successes: on the run's own env
this is the false-alarm rate that calibration bounds by alpha), the alarm rate, and the lead time
of alarmed failures (steps from the alarm to the failing step, 0 = the alarm came on that step),
each with a 95% percentile bootstrap interval over episodes. ``random`` alarms each episode with
FIPER's alarm rate, at a uniformly drawn step: the chance level.
Writes ``<run>/monitor/eval/<label>.json`` and ``.png`` and TensorBoard scalars
``monitor/<label>/<rule>_<metric>`` in ``<run>/monitor/eval/`` at the checkpoint's step.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from rlkd.errors import UserError
from rlkd.monitor.monitor import RULES, Monitor
from rlkd.monitor.traces import Episode
from rlkd.monitor.workflow import EVAL_SEED_OFFSET, MONITOR_DIR, load_monitor, roll_out

BOOTSTRAP = 2_000
METRICS = ("accuracy", "tpr", "fpr", "alarm_rate")


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
) -> dict[str, Any]:
    """Evaluate the calibrated monitor of ``run_dir`` on ``episodes`` episodes of an env."""
    from rlkd.core.run import Run

    run = Run.open(run_dir)
    mon, step = load_monitor(run)  # before any episode: a foreign monitor/ costs nothing
    offset = EVAL_SEED_OFFSET + seed
    out = roll_out(run.path, step, env_id, env_kwargs, episodes, offset, mon.cfg.deterministic)
    rows = judge(mon, out.episodes, np.random.default_rng(offset))
    summary = summarise(rows)
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
        "episodes": len(rows),
        "success_rate": _success_rate(out.episodes),
        "rules": summary,
        "per_episode": rows,
    }
    (folder / f"{label}.json").write_text(json.dumps(record, indent=1, default=repr) + "\n")
    plot(mon, out.episodes, rows, folder / f"{label}.png", title=f"{out.env_id} {out.env_kwargs or ''}")
    _log_tensorboard(folder, step, label, summary)
    return record


def _success_rate(episodes: list[Episode]) -> float | None:
    flags = [e.success for e in episodes if e.success is not None]
    return float(np.mean(flags)) if flags else None


def judge(mon: Monitor, episodes: list[Episode], rng: np.random.Generator) -> list[dict[str, Any]]:
    """Per episode: length, return, failure and each rule's first alarm step (``random`` included)."""
    rows = [
        {"length": e.length, "return": e.ret, "failed": e.failed, "alarm": mon.alarm_steps(e)}
        for e in episodes
    ]
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
            lead = (lengths - 1 - steps)[alarm & failed]
            entry["lead_time"] = {
                "median": float(np.median(lead)) if len(lead) else None,
                "mean": float(lead.mean()) if len(lead) else None,
                "n": len(lead),
            }
        result[rule] = entry
    return result


def plot(
    mon: Monitor, episodes: list[Episode], rows: list[dict[str, Any]], path: Path, title: str, most: int = 30
) -> None:
    """FIPER's two windowed scores over time for up to ``most`` episodes, thresholds dashed, failed
    episodes red, each FIPER alarm a black dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for e, r in list(zip(episodes, rows, strict=True))[:most]:
        scores = mon.scores(e)
        colour = "tab:red" if r["failed"] else "tab:grey"
        for ax, name in zip(axes, RULES["fiper"], strict=True):
            ax.plot(scores[name], color=colour, alpha=0.5, lw=0.8)
            t = r["alarm"]["fiper"]
            if t is not None:
                ax.plot([t], [scores[name][t]], "k.", ms=5)
    for ax, name in zip(axes, RULES["fiper"], strict=True):
        ax.axhline(mon.thresholds[name], color="k", ls="--", lw=1)
        ax.set(xlabel="step", ylabel=f"{name} (window {mon.cfg.window})", yscale="log")
    fig.suptitle(f"{title}: red = failed, grey = succeeded, dot = alarm", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _log_tensorboard(folder: Path, step: int, label: str, summary: dict[str, dict[str, Any]]) -> None:
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
    finally:
        writer.close()
