"""rlkd: reinforcement learning by distillation (RND, RDD, DisWM). See :mod:`rlkd.api`."""

from __future__ import annotations

from typing import Any


def train(*args: Any, **kwargs: Any) -> Any:
    """:func:`rlkd.api.train` (imported on first use, so ``import rlkd`` stays light)."""
    from rlkd.api import train as _train

    return _train(*args, **kwargs)


def load(*args: Any, **kwargs: Any) -> Any:
    """:func:`rlkd.api.load` (imported on first use)."""
    from rlkd.api import load as _load

    return _load(*args, **kwargs)
