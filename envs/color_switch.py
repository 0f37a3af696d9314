"""Switching an env's colour distractors mid-training (DisWM's ``--color-switch``): the env side,
for every rlkd env that has ``set_color_set`` (AGV warehouse, point reach, dm-control pixels), and
the training-loop callback that switches at half of training (official ``dreamer.py`` main loop)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rlkd.errors import UserError


def check_color_switch(envs: Any) -> None:
    """Fail before training, not at half of it, when the env has no colour set to switch."""
    target = envs.unwrapped
    subs = getattr(target, "envs", [])
    if not hasattr(target, "set_color_set") and not (subs and hasattr(subs[0].unwrapped, "set_color_set")):
        raise UserError(
            "this environment has no colour distractor to switch (set_color_set); drop --color-switch"
        )


def set_color_set(envs: Any, name: str) -> None:
    """Switch the distractor colour set of every sub-environment (AGV: native; DMC: per env)."""
    target = envs.unwrapped
    if hasattr(target, "set_color_set"):
        target.set_color_set(name)
    elif hasattr(target, "call"):
        target.call("set_color_set", name)
    else:
        raise UserError(
            "this environment has no colour distractor to switch (set_color_set); drop --color-switch"
        )


class ColourSwitch:
    """A loop callback: switch to colour set ``to`` at step ``at`` (DisWM: half of training).

    Args:
        to: The colour set to switch to.
        at: The env step of the switch.
    """

    def __init__(self, to: str, at: int) -> None:
        self.to, self.at, self.switched = to, at, False

    def on_start(self, envs: Any) -> None:
        if self.switched:  # a resumed run continues on the colours it had switched to
            set_color_set(envs, self.to)

    def on_step(self, step: int, envs: Any, run: Any) -> None:
        if not self.switched and step >= self.at:
            set_color_set(envs, self.to)
            self.switched = True
            run.log_scalars(step, {"charts/color_switch": 1.0})

    def state_dict(self) -> dict[str, Any]:
        return {"switched": self.switched}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.switched = bool(state.get("switched", False))
