"""The report's files and text: the table, CSVs and learning-curve PNGs."""

from __future__ import annotations

import csv
import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from rlkd.analysis.events import Curve
from rlkd.analysis.grouping import MISSING, GroupRow
from rlkd.analysis.numerics import bootstrap_band, iqm_interval, resample


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
        header += [f"{short} final", f"{short} IQM (95% CI)", f"{short} best"]
    lines = [header]
    for r in rows:
        steps = human_steps(r.steps_min) + (
            "" if r.steps_min == r.steps_max else f"-{human_steps(r.steps_max)}"
        )
        cells = [r.name, str(r.seeds), steps, human_duration(r.wall_time_s), _num(r.sps)]
        for t in shown:
            m = r.metrics.get(t)
            if m is None:
                cells += [MISSING, MISSING, MISSING]
                continue
            final = _num(m.final_mean) + ("" if math.isnan(m.final_std) else f" ± {m.final_std:.3g}")
            if m.n < r.seeds:
                final += f" (n={m.n})"
            iqm, lo, hi = iqm_interval(np.asarray(m.finals))
            interval = "" if math.isnan(lo) else f" ({_num(lo)}, {_num(hi)})"
            cells += [final, _num(iqm) + interval, _num(m.best_mean)]
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
        "final: mean ± std (ddof=1) over seeds of each run's last logged value (no smoothing); IQM: "
        "interquartile mean of those with a 95% bootstrap interval (rliable); best: mean over seeds of "
        "each run's max (min for losses); wall: active training time"
    )
    return "\n".join(text)


# ===================================================================== files
def _slug(tag: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", tag).strip("_")


def _fmt(x: float) -> str:
    return "" if not math.isfinite(x) else f"{x:.10g}"


def write_csv(out: Path, tag: str, per_group: list[tuple[GroupRow, list[Curve]]], points: int) -> Path:
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
        columns.append(bootstrap_band(values))
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


def write_summary(out: Path, rows: list[GroupRow], tags: list[str], group_by: Sequence[str]) -> Path:
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


def plot_curves(
    out: Path,
    tag: str,
    axis: str,
    per_group: list[tuple[GroupRow, list[Curve]]],
    labels: dict[str, str],
    common: dict[str, str],
    points: int,
    per_seed: bool = False,
    smooth: int = 1,
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
            pairs = [_strictly_increasing(x / scale, _smoothed(c.values, smooth))
                     for x, c in zip(group_x, curves, strict=True)]  # fmt: skip
            # Up to the group's longest run, never cut at its shortest: the band uses the runs that
            # reach each point, and a dotted line marks where the first run ends.
            lo, hi = max(float(x[0]) for x, _ in pairs), max(float(x[-1]) for x, _ in pairs)
            grid = np.array([lo]) if lo == hi else np.linspace(lo, hi, max(points, 2))
            band = bootstrap_band(resample(pairs, grid))
            color = colors[i % len(colors)]
            ns = sorted({int(k) for k in band.n if k})
            label = f"{labels[row.name]} (n={ns[-1]}" + (f", {ns[0]} at the end)" if len(ns) > 1 else ")")
            marker = "o" if len(grid) == 1 else None
            ax.plot(grid, band.mean, color=color, lw=1.8, label=label, marker=marker)
            for x, y in pairs if per_seed else ():
                ax.plot(x, y, color=color, lw=0.6, alpha=0.5)
            if len(curves) > 1:
                ax.fill_between(grid, band.lower, band.upper, color=color, alpha=0.2, lw=0)
                shortest = min(float(x[-1]) for x, _ in pairs)
                if shortest < hi:
                    ax.axvline(shortest, color=color, lw=0.8, ls=":")
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
            stat = "mean and 95% bootstrap CI over seeds" if banded else "one seed each: no confidence band"
            stat += f", each run smoothed over {smooth} logs" if smooth > 1 else ""
            leg = ax.legend(loc="best", frameon=False, title=f"{what}{stat}")
            leg.get_title().set_fontsize(8.5)
        path = out / f"{_slug(tag)}_{axis}.png"
        fig.savefig(path)
        plt.close(fig)
    return path


def _smoothed(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over ``window`` logged points (the first points average fewer)."""
    if window <= 1:
        return values
    sums = np.cumsum(np.insert(values.astype(np.float64), 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    start = np.maximum(idx - window, 0)
    return (sums[idx] - sums[start]) / (idx - start)


def plot_profile(out: Path, tag: str, rows: list[GroupRow], labels: dict[str, str]) -> Path | None:
    """Performance profile of the final values (rliable): per group, the fraction of runs whose
    final value exceeds each threshold tau. None when no group has the tag."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finals = {r.name: np.asarray(r.metrics[tag].finals) for r in rows if tag in r.metrics}
    if not finals:
        return None
    taus = np.linspace(min(f.min() for f in finals.values()), max(f.max() for f in finals.values()), 200)
    fig, ax = plt.subplots(figsize=(6.4, 4.2), dpi=150, layout="constrained")
    for name, f in finals.items():
        ax.plot(taus, [(f > t).mean() for t in taus], lw=1.8, label=f"{labels[name]} (n={len(f)})")
    ax.set_xlabel(f"final {tag.rsplit('/', 1)[-1].replace('_', ' ')} threshold tau")
    ax.set_ylabel("fraction of runs above tau")
    ax.set_title(f"performance profile: {tag}", loc="left")
    ax.set_ylim(-0.02, 1.02)
    ax.grid(True, alpha=0.3, lw=0.6)
    ax.legend(frameon=False)
    path = out / f"{_slug(tag)}_profile.png"
    fig.savefig(path)
    plt.close(fig)
    return path


def _strictly_increasing(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Keep the last point of each run of equal x (wall times of quickly logged steps can tie)."""
    x = np.maximum.accumulate(x)  # a clock never runs backwards
    keep = np.append(np.diff(x) > 0, True)
    return x[keep], y[keep]
