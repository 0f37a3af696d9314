"""The AGV scene rasteriser: top-down uint8 frames of any size, for pixel observations and videos."""

from __future__ import annotations

import numpy as np

from .colors import AGV, FLOOR, GOAL, OBSTACLE, RACK, WALL
from .maps import AGV_RADIUS, GOAL_RADIUS


class Raster:
    """The drawing half of :class:`.core.AGVSim` (a mixin: it reads the sim's state and palette)."""

    # ------------------------------------------------------------------ rendering
    def _layout(self, size: int) -> tuple[float, float, float]:
        """Pixels per metre and pixel offsets (x, y) of the floor's top-left corner."""
        scale = (size - 2.0) / max(self.width, self.height)  # keep >= 1 px of wall on every side
        return scale, (size - self.width * scale) / 2.0, (size - self.height * scale) / 2.0

    def _labels(self, size: int) -> np.ndarray:
        """(size, size) uint8 palette slots of the static map (floor/rack/wall), cached."""
        if size not in self._label_cache:
            scale, ox, oy = self._layout(size)
            c = np.arange(size) + 0.5
            wx = (c - ox) / scale  # world x of each column centre
            wy = self.height - (c - oy) / scale  # world y of each row centre
            px, py = np.meshgrid(wx, wy, indexing="xy")
            lab = np.full((size, size), FLOOR, dtype=np.uint8)
            for x0, y0, x1, y1 in self._racks64:
                lab[(px >= x0) & (px <= x1) & (py >= y0) & (py <= y1)] = RACK
            lab[(px < 0) | (px > self.width) | (py < 0) | (py > self.height)] = WALL
            self._label_cache[size] = lab
        return self._label_cache[size]

    def render(self, idx: np.ndarray | slice, size: int) -> np.ndarray:
        """Top-down frames of envs ``idx``: (m, size, size, 3) uint8, north up.

        Discs are drawn at their true size but at least 1.5 px in radius so that the AGV and
        the goal stay visible in 64 x 64 observations.
        """
        scale, ox, oy = self._layout(size)
        pal = self.palette[idx]  # (m, 6, 3)
        frames = pal[:, self._labels(size)]  # (m, S, S, 3)

        m = len(frames)
        env_ix = np.arange(m)[:, None, None, None]

        def draw(cx: np.ndarray, cy: np.ndarray, radius: float, color: np.ndarray) -> None:
            # cx, cy: (m, D) world centres; color: (m, 3) uint8. Only a P x P pixel patch around
            # each disc is tested (not the whole frame): ~100x less work at 64 x 64.
            col = ox + cx * scale  # pixel coordinates of the centres, (m, D)
            row = oy + (self.height - cy) * scale
            r = max(radius * scale, 1.5)
            p = int(np.ceil(2 * r)) + 2
            off = np.arange(p)
            jj = (
                np.floor(col - r).astype(np.int64)[..., None, None] + off[None, None, None, :]
            )  # (m, D, 1, P)
            ii = (
                np.floor(row - r).astype(np.int64)[..., None, None] + off[None, None, :, None]
            )  # (m, D, P, 1)
            inside = (jj + 0.5 - col[..., None, None]) ** 2 + (ii + 0.5 - row[..., None, None]) ** 2 <= r * r
            inside &= (jj >= 0) & (jj < size) & (ii >= 0) & (ii < size)
            e, i, j = (np.broadcast_to(a, inside.shape)[inside] for a in (env_ix, ii, jj))
            frames[e, i, j] = color[e]

        draw(self.goal[idx, 0:1], self.goal[idx, 1:2], GOAL_RADIUS, pal[:, GOAL])
        if self.k:
            ob = self.obst[idx]
            draw(ob[..., 0], ob[..., 1], self.scene.obstacle_radius, pal[:, OBSTACLE])
        x, y, th = self.x[idx], self.y[idx], self.theta[idx]
        draw(x[:, None], y[:, None], AGV_RADIUS, pal[:, AGV])
        if AGV_RADIUS * scale >= 4.0:  # heading marker only where the AGV is big enough to show it
            hx = x + 0.55 * AGV_RADIUS * np.cos(th)
            hy = y + 0.55 * AGV_RADIUS * np.sin(th)
            draw(hx[:, None], hy[:, None], 0.3 * AGV_RADIUS, np.zeros_like(pal[:, AGV]))
        return frames
