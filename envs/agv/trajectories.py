"""The AGV env's evaluation hook: each episode's (x, y) trajectory, drawn as one PNG.

``rlkd eval`` asks the unwrapped vector env for ``eval_tracker()``; any env can provide one (an
object with ``step`` and ``report`` as below) to add its own files to an evaluation.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

MAX_PLOTTED_TRAJECTORIES = 20
"""The trajectory PNG draws at most this many episodes (the first counted ones), to stay readable."""


class TrajectoryTracker:
    """Records (x, y) trajectories and goals of an AGV vector env's episodes.

    Positions come from the env's ``poses()``; with same-step autoreset the AGV already stands at
    its next start when ``step`` returns, so an episode's last position is ``info["final_pose"]``.
    """

    def __init__(self, env: Any) -> None:
        self.env = env
        self.current: list[list[np.ndarray]] = [[p[:2].copy()] for p in env.poses()]
        self.goal = env.goals()

    def step(self, info: dict[str, Any], done: np.ndarray) -> dict[int, tuple[np.ndarray, np.ndarray]]:
        """Update after a vector step; returns ``{env: (trajectory (T, 2), goal (2,))}`` of ended episodes."""
        poses = self.env.poses()
        ended = {}
        for i in range(len(done)):
            if done[i]:
                self.current[i].append(info["final_pose"][i, :2].copy())
                ended[i] = (np.stack(self.current[i]), self.goal[i].copy())
                self.current[i] = [poses[i, :2].copy()]
            else:
                self.current[i].append(poses[i, :2].copy())
        self.goal = self.env.goals()
        return ended

    def report(
        self, records: list[tuple[np.ndarray, np.ndarray]], successes: list[bool | None], folder: Path,
        step: int,
    ) -> dict[str, str]:  # fmt: skip
        """Draw the first :data:`MAX_PLOTTED_TRAJECTORIES` counted episodes; returns ``{name: file}``."""
        from rlkd.envs.agv.render import plot_trajectories

        k = min(len(records), MAX_PLOTTED_TRAJECTORIES)
        succ = [bool(s) for s in successes[:k]]
        title = f"{self.env.scene.name}, checkpoint step {step}: {sum(succ)}/{k} episodes reached the goal"
        path = plot_trajectories(
            self.env, [r[0] for r in records[:k]], folder / f"trajectories_step_{step}.png",
            successes=succ, goals=np.stack([r[1] for r in records[:k]]), title=title,
        )  # fmt: skip
        return {"trajectories_png": str(path)}
