"""Pictures for people: episode GIFs and trajectory plots of the warehouse map."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rlkd.core.media import write_gif

from .maps import AGV_RADIUS, GOAL_RADIUS, WarehouseMap, get_scenario


def episode_to_gif(frames: Sequence[np.ndarray] | np.ndarray, path: str | Path, fps: float = 8.0) -> Path:
    """Write ``render()`` frames, (T, H, W, 3) uint8, as an animated GIF; returns the path."""
    return write_gif(frames, path, fps=fps)


def _scene_of(scene_or_env: Any) -> WarehouseMap:
    """Accept a WarehouseMap, a scenario name, or an AGV env (possibly wrapped)."""
    if isinstance(scene_or_env, WarehouseMap):
        return scene_or_env
    if isinstance(scene_or_env, str):
        return get_scenario(scene_or_env)
    env = getattr(scene_or_env, "unwrapped", scene_or_env)
    scene = getattr(env, "scene", None)
    if isinstance(scene, WarehouseMap):
        return scene
    raise ValueError(
        "plot_trajectories needs a WarehouseMap, a scenario name or an AGV env, "
        f"got {type(scene_or_env).__name__}"
    )


def plot_trajectories(
    scene_or_env: Any,
    trajectories: Sequence[np.ndarray],
    path: str | Path,
    successes: Sequence[bool] | None = None,
    goals: Sequence[Sequence[float]] | np.ndarray | None = None,
    title: str | None = None,
) -> Path:
    """Draw the map (walls, racks, obstacle lanes) with trajectories overlaid and save a PNG.

    Args:
        scene_or_env: A ``WarehouseMap``, scenario name, or AGV env (its current goals are used
            when ``goals`` is None).
        trajectories: List of (T, 2) xy arrays in metres; each one's first point is its start.
        path: Output PNG path; parent folders are created.
        successes: Optional per-trajectory flags: successful ones are drawn solid, failed dashed.
        goals: Optional per-trajectory goal positions (n, 2) (or a single (2,) goal for all).
        title: Plot title (default: the scenario name).

    Returns:
        The written path.
    """
    import matplotlib

    matplotlib.use("Agg")  # headless; must precede pyplot
    import matplotlib.pyplot as plt

    scene = _scene_of(scene_or_env)
    trajs = [np.asarray(t, dtype=np.float64).reshape(-1, 2) for t in trajectories]
    if successes is not None and len(successes) != len(trajs):
        raise ValueError(f"got {len(successes)} success flags for {len(trajs)} trajectories")
    goals = _goals_for(scene_or_env, goals, len(trajs))
    aspect = scene.height / scene.width
    fig, ax = plt.subplots(figsize=(9.0, max(9.0 * aspect, 3.0) + 0.8), dpi=110)
    _draw_map(ax, scene)
    _draw_trajectories(ax, trajs, successes, goals, plt.get_cmap("tab10"))
    ax.set_xlim(-0.5, scene.width + 0.5)
    ax.set_ylim(-0.5, scene.height + 0.5)
    ax.set_aspect("equal")
    ax.set_xlabel("x [m]")
    ax.set_ylabel("y [m]")
    ax.set_title(title or f"AGV warehouse: {scene.name}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, bbox_inches="tight")
    plt.close(fig)
    return out


def _goals_for(scene_or_env: Any, goals: Any, n: int) -> np.ndarray | None:
    """Goals as (n, 2): as given (one (2,) goal is shared), else an env's current goals, else None."""
    if goals is None:
        env = getattr(scene_or_env, "unwrapped", scene_or_env)
        sim = getattr(env, "sim", None)
        if sim is None or not n:
            return None
        g = sim.goal[:n]
        return g if len(g) == n else np.broadcast_to(g[0], (n, 2))
    goals = np.asarray(goals, dtype=np.float64)
    return np.broadcast_to(goals, (n, 2)) if goals.ndim == 1 else goals.reshape(-1, 2)


def _draw_map(ax: Any, scene: Any) -> None:
    """Floor and walls, racks, and the obstacles' lanes."""
    from matplotlib.patches import Rectangle

    ax.add_patch(Rectangle((0, 0), scene.width, scene.height, facecolor="#f2f2ec", edgecolor="#333333", lw=3))
    for i, (x0, y0, x1, y1) in enumerate(scene.rack_array):
        ax.add_patch(Rectangle((x0, y0), x1 - x0, y1 - y0, facecolor="#9a6a3c", edgecolor="#5a3a1c", lw=0.8,
                               label="rack" if i == 0 else None))  # fmt: skip
    for i, (xa, ya, xb, yb) in enumerate(scene.path_array):
        ax.plot([xa, xb], [ya, yb], color="#f08c14", lw=6, alpha=0.25, solid_capstyle="round",
                label="obstacle lane" if i == 0 else None)  # fmt: skip


def _draw_trajectories(
    ax: Any, trajs: list[np.ndarray], successes: Sequence[bool] | None, goals: np.ndarray | None, cmap: Any
) -> None:
    """Each trajectory (solid if it succeeded, dashed if not), its start, end marker and goal."""
    from matplotlib.patches import Circle

    for i, t in enumerate(trajs):
        ok = None if successes is None else bool(successes[i])
        style = "-" if ok in (None, True) else "--"
        suffix = "" if ok is None else (" (goal)" if ok else " (fail)")
        color = cmap(i % 10)
        label = f"episode {i}{suffix}" if len(trajs) <= 10 else None
        ax.plot(t[:, 0], t[:, 1], style, color=color, lw=1.6, label=label)
        if len(t):
            ax.add_patch(Circle(t[0], AGV_RADIUS, facecolor="white", edgecolor=color, lw=1.5, zorder=3))
            end = "*" if ok else ("x" if ok is False else "o")
            ax.plot(*t[-1], end, color=color, ms=8 if end != "*" else 11, zorder=4)
        if goals is not None:
            style_kw = {"facecolor": "#28af46", "edgecolor": color, "lw": 1.5, "alpha": 0.8, "zorder": 2}
            ax.add_patch(Circle(goals[i], GOAL_RADIUS, **style_kw))
    # Proxy artists so the legend explains the markers once.
    ax.plot([], [], "o", mfc="white", mec="black", label="start")
    if goals is not None:
        ax.plot([], [], "o", color="#28af46", ms=9, label=f"goal (radius {GOAL_RADIUS} m)")
