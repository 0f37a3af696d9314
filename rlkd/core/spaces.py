"""Observation and action spaces as checkpoint data (plain numbers and lists, so a checkpoint still
loads with ``torch.load(..., weights_only=True)``): a policy is rebuilt without its env. Bounds are
Python floats, not tensors: they may be infinite, which the checkpoint guard refuses in tensors."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np


def space_to_data(space: gym.Space) -> dict[str, Any]:
    """A Box or Discrete space as ``{"kind", ...}`` of tensors and numbers."""
    if isinstance(space, gym.spaces.Discrete):
        return {"kind": "discrete", "n": int(space.n)}
    if isinstance(space, gym.spaces.Box):
        low, high = _bound(space.low), _bound(space.high)
        return {"kind": "box", "shape": list(space.shape), "low": low, "high": high,
                "dtype": str(np.dtype(space.dtype))}  # fmt: skip
    raise ValueError(f"cannot store a {type(space).__name__} space in a checkpoint")


def space_from_data(data: dict[str, Any]) -> gym.Space:
    """The space :func:`space_to_data` stored."""
    if data["kind"] == "discrete":
        return gym.spaces.Discrete(int(data["n"]))
    dtype, shape = np.dtype(data["dtype"]), tuple(data["shape"])
    low, high = (np.broadcast_to(np.asarray(data[k], dtype), shape) for k in ("low", "high"))
    return gym.spaces.Box(low.copy(), high.copy(), shape, dtype)


def _bound(values: np.ndarray) -> float | list[Any]:
    """One number when every element has it (pixel and most vector spaces), else the nested list."""
    array = np.asarray(values, np.float64)
    flat = array.ravel()
    return float(flat[0]) if len(flat) and (flat == flat[0]).all() else array.tolist()
