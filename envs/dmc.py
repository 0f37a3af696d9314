"""dm-control pixel environments with a Distracting-Control-Suite-style colour distractor.

Ids ``rlkd/DMC-<Domain><Task>-v0`` (e.g. ``rlkd/DMC-CheetahRun-v0``): observations are 64x64 RGB
uint8 renders, actions Box(-1, 1) (dm-control's bounds are rescaled), rewards summed over
``action_repeat`` physics-control steps, episodes truncated at 1000 control steps.

The colour distractor (Stone et al. 2021, used by DisWM's DMC experiments) random-walks the RGB
of every geom and material (the floor's grid among them) after each step; ``color_set`` "train"
and "test" draw starting colours from disjoint halves of RGB space. The skybox is a texture that
no material references, so the background is not recoloured: the shift is weaker than the
Distracting Control Suite's, whose background changes too.

``official_wrapper=True`` steps and colours as the official DisWM code's DMC wrapper does
(qiwang067/DisWM at 001cc4d), bugs included: ``wrappers.py`` l. 373 passes
``frame_skip=action_repeat`` to dmc2gym and l. 399-403 repeat the action again, so one agent step
is ``action_repeat ** 2`` control steps (4), and ``reward += reward`` inside that loop leaves
2 x the last inner call's reward (the first ``action_repeat`` control rewards are dropped);
episodes end at dm-control's 1000 control steps, 250 agent steps. Its distractor
(``distracting_control/color.py`` l. 65-108, ``configs.yaml`` l. 431/441: ``max_delta 0.2,
step_std 0.2``) sets every material's RGB (geoms untouched) uniformly within +-0.2 of one base
colour per set (train (0.7, 0.3, 0.5), test (0.5, 0.7, 0.3)), clipped to [0, 1], and random-walks
it with std 0.2 at every control step, clipping at the bounds.

Rendering needs OpenGL: ``MUJOCO_GL`` is set (only if unset) to ``egl`` when an EGL library is
present (Debian: ``libegl1 libegl-mesa0 libgl1-mesa-dri``; works headless on CPU via Mesa) and to
``osmesa`` otherwise (Debian: ``libosmesa6``).
"""

from __future__ import annotations

import ctypes.util
import os
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np

from rlkd.errors import UserError

if "MUJOCO_GL" not in os.environ:
    os.environ["MUJOCO_GL"] = "egl" if ctypes.util.find_library("EGL") else "osmesa"

TASKS = {
    "CheetahRun": ("cheetah", "run"),
    "ReacherEasy": ("reacher", "easy"),
    "WalkerWalk": ("walker", "walk"),
    "CartpoleSwingup": ("cartpole", "swingup"),
    "FingerSpin": ("finger", "spin"),
    "CupCatch": ("ball_in_cup", "catch"),
}
COLOR_SETS = ("train", "test")
OFFICIAL_BASE = {"train": (0.7, 0.3, 0.5), "test": (0.5, 0.7, 0.3)}
"""The official distractor's base colour of every material, per set (``color.py`` l. 65-74)."""
OFFICIAL_MAX_DELTA, OFFICIAL_STEP_STD = 0.2, 0.2


class DMCPixelEnv(gym.Env):
    """One dm-control task rendered to pixels, with an optional colour distractor.

    Args:
        domain: dm-control domain, e.g. ``cheetah``.
        task: dm-control task, e.g. ``run``.
        size: Render side in pixels.
        action_repeat: Physics-control steps per env step (rewards summed).
        camera_id: Camera to render (2 for quadruped, else 0, as DreamerV2).
        color_set: ``train``, ``test`` or ``none`` (no distractor).
        color_step_std: Std of the per-step random walk of each colour channel.
        time_limit: Control steps per episode (dm-control's default 1000).
        official_wrapper: Step, reward and colour as the official DisWM wrapper (module docstring).
    """

    metadata: ClassVar[dict[str, Any]] = {"render_modes": ["rgb_array"]}

    def __init__(
        self,
        domain: str,
        task: str,
        size: int = 64,
        action_repeat: int = 2,
        camera_id: int | None = None,
        color_set: str = "train",
        color_step_std: float = 0.03,
        time_limit: int = 1000,
        official_wrapper: bool = False,
        render_mode: str | None = "rgb_array",
    ) -> None:
        from dm_control import suite

        if color_set not in (*COLOR_SETS, "none"):
            raise UserError(f"color_set must be train, test or none, got {color_set!r}")
        if action_repeat < 1:
            raise UserError(f"action_repeat must be >= 1, got {action_repeat}")
        self._env = suite.load(domain, task, task_kwargs={"random": None})
        self.size, self.action_repeat = size, action_repeat
        self.camera_id = (2 if domain == "quadruped" else 0) if camera_id is None else camera_id
        self.color_set, self.color_step_std = color_set, color_step_std
        self.official = official_wrapper
        # Control steps per agent step: the official wrapper repeats inside dmc2gym's frame skip too.
        self.control_steps = action_repeat * action_repeat if official_wrapper else action_repeat
        self.max_steps = (time_limit + self.control_steps - 1) // self.control_steps
        self.render_mode = render_mode
        spec = self._env.action_spec()
        self._low, self._high = spec.minimum.astype(np.float32), spec.maximum.astype(np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, spec.shape, np.float32)
        self.observation_space = gym.spaces.Box(0, 255, (size, size, 3), np.uint8)
        model = self._env.physics.model
        self._base_geom = model.geom_rgba.copy()
        self._base_mat = model.mat_rgba.copy()
        self._colors: np.ndarray | None = None
        self._steps = 0
        self._rng = np.random.default_rng()

    # ------------------------------------------------------------------ colour distractor
    def set_color_set(self, name: str) -> None:
        """Switch to colour set ``name`` (train/test/none); takes effect immediately."""
        if name not in (*COLOR_SETS, "none"):
            raise UserError(f"color set must be train, test or none, got {name!r}")
        self.color_set = name
        self._reset_colors()

    def _reset_colors(self) -> None:
        model = self._env.physics.model
        model.geom_rgba[:] = self._base_geom
        model.mat_rgba[:] = self._base_mat
        if self.color_set == "none":
            self._colors = None
            return
        lo, hi = self._range()
        n = model.nmat if self.official else model.ngeom + model.nmat
        self._colors = self._rng.uniform(lo, hi, size=(n, 3))
        self._apply_colors()

    def _range(self) -> tuple[np.ndarray | float, np.ndarray | float]:
        if self.official:  # +-0.2 around the set's base colour, within [0, 1]
            base = np.array(OFFICIAL_BASE[self.color_set])
            return np.maximum(base - OFFICIAL_MAX_DELTA, 0.0), np.minimum(base + OFFICIAL_MAX_DELTA, 1.0)
        # Disjoint halves of RGB space: train colours in [0, 0.5), test colours in [0.5, 1].
        return (0.0, 0.5) if self.color_set == "train" else (0.5, 1.0)

    def _apply_colors(self) -> None:
        model = self._env.physics.model
        # Materials of dm-control's shared assets (grid floor, self, ...); the skybox texture is not one.
        model.mat_rgba[:, :3] = self._colors[-model.nmat :]
        if not self.official:
            model.geom_rgba[:, :3] = self._colors[: model.ngeom]

    def _walk_colors(self) -> None:
        if self._colors is None:
            return
        lo, hi = self._range()
        if self.official:  # clipped at the bounds, as color.py l. 96-105
            step = self._rng.normal(0.0, OFFICIAL_STEP_STD, self._colors.shape)
            self._colors = np.clip(self._colors + step, lo, hi)
            self._apply_colors()
            return
        self._colors = self._colors + self._rng.normal(0.0, self.color_step_std, self._colors.shape)
        # Reflect at the set's bounds so the two sets stay disjoint forever.
        self._colors = np.where(self._colors < lo, 2 * lo - self._colors, self._colors)
        self._colors = np.where(self._colors > hi, 2 * hi - self._colors, self._colors).clip(lo, hi)
        self._apply_colors()

    # ------------------------------------------------------------------ gymnasium API
    def render(self) -> np.ndarray:
        return self._env.physics.render(self.size, self.size, camera_id=self.camera_id)

    def reset(self, *, seed: int | None = None, options: dict | None = None) -> tuple[np.ndarray, dict]:
        super().reset(seed=seed)
        if seed is not None:
            self._rng = np.random.default_rng(seed)
            self._env.task.random.seed(seed)
        self._env.reset()
        self._steps = 0
        self._reset_colors()
        return self.render(), {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict]:
        action = np.clip(np.asarray(action, np.float32), -1.0, 1.0)
        scaled = self._low + (action + 1.0) * 0.5 * (self._high - self._low)
        if self.official:
            ts, reward = self._official_step(scaled)
        else:
            reward = 0.0
            for _ in range(self.action_repeat):
                ts = self._env.step(scaled)
                reward += ts.reward or 0.0
                if ts.last():
                    break
            self._walk_colors()
        self._steps += 1
        # dm-control tasks only end by time limit: truncation (bootstrap), never termination.
        truncated = ts.last() or self._steps >= self.max_steps
        return self.render(), float(reward), False, bool(truncated), {}


    def _official_step(self, scaled: np.ndarray) -> tuple[Any, float]:
        """One agent step of the official wrapper: ``action_repeat`` calls of dmc2gym, each of
        ``action_repeat`` control steps with their rewards summed (``dmc2gym/wrappers.py``
        l. 182-187); the outer loop's ``reward += reward`` keeps 2 x the last call's sum. The
        colours walk at every control step."""
        for _ in range(self.action_repeat):
            inner = 0.0
            for _ in range(self.action_repeat):
                ts = self._env.step(scaled)
                inner += ts.reward or 0.0
                self._walk_colors()
                if ts.last():
                    break
            reward = inner + inner  # wrappers.py l. 401-402: the loop variable overwrites the sum
            if ts.last():
                break
        return ts, reward


def register_dmc_envs() -> None:
    """Register ``rlkd/DMC-<Domain><Task>-v0`` ids (idempotent)."""
    for name, (domain, task) in TASKS.items():
        env_id = f"rlkd/DMC-{name}-v0"
        if env_id in gym.registry:
            continue
        gym.register(env_id, entry_point=DMCPixelEnv, kwargs={"domain": domain, "task": task})


def make_dmc(env_id: str, **kwargs: Any) -> DMCPixelEnv:
    """Convenience constructor from an ``rlkd/DMC-*`` id."""
    name = env_id.removeprefix("rlkd/DMC-").removesuffix("-v0")
    if name not in TASKS:
        raise UserError(f"unknown DMC id {env_id!r}; known: {', '.join(f'rlkd/DMC-{t}-v0' for t in TASKS)}")
    domain, task = TASKS[name]
    return DMCPixelEnv(domain, task, **kwargs)
