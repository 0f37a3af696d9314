"""The one exception type for mistakes a user can fix (bad ids, options, files)."""


class UserError(Exception):
    """A user-fixable error. The CLI prints ``error: <message>`` on one line and exits with 2.

    The message should say what was wrong and what to do about it.
    """


def describe_space(space: object) -> str:
    """A Gymnasium space on one line for error messages (a Box's repr spans lines once its bounds
    differ per dimension): ``Box(shape=(40,), float32, bounds [-1.0, 5.0])``, ``Discrete(4)``."""
    low, high = getattr(space, "low", None), getattr(space, "high", None)
    if type(space).__name__ == "Box" and low is not None and high is not None:
        bounds = f"[{low.min()}, {high.max()}]" if low.size else "[]"
        return f"Box(shape={space.shape}, {space.dtype}, bounds {bounds})"  # type: ignore[attr-defined]
    parts = getattr(space, "spaces", None)  # Dict and Tuple: their parts, each on one line
    if isinstance(parts, dict):
        text = f"Dict({', '.join(f'{k!r}: {describe_space(v)}' for k, v in parts.items())})"
    elif isinstance(parts, tuple):
        text = f"Tuple({', '.join(describe_space(v) for v in parts)})"
    else:
        text = " ".join(str(space).split())
    return text if len(text) <= 200 else text[:197] + "..."
