"""Output paths checked before work starts, and file-system errors as one readable line."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from rlkd.errors import UserError


def describe_os_error(exc: OSError) -> str:
    """``Permission denied: runs/x`` from an ``OSError`` (its reason and the path(s) it names)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    paths = [str(p) for p in (exc.filename, exc.filename2) if p is not None]
    return f"{reason}: {' -> '.join(paths)}" if paths else reason


PROBE_PREFIX = ".rlkd-probe-"
"""The name start of :func:`make_dir`'s short-lived write probe, which another process may see."""


def make_dir(path: Path, what: str) -> Path:
    """Create folder ``path`` (and its parents) and check that it can be written.

    Args:
        path: The folder.
        what: How the user named it (``--run-dir``, ``--out``), for the message.

    Raises:
        UserError: The path is a file, a parent is a file, or the folder cannot be created or written.
    """
    if path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} is a file, not a folder; give a folder path")
    try:
        path.mkdir(parents=True, exist_ok=True)
        _probe(path)
    except OSError as exc:
        raise UserError(f"{what} {path} cannot be created or written ({describe_os_error(exc)})") from None
    return path


def check_output_file(path: Path, what: str) -> Path:
    """Check, before any work, that file ``path`` can be written (its folder is created).

    Raises:
        UserError: ``path`` is a folder, or its folder cannot be created or written.
    """
    if path.is_dir():
        raise UserError(f"{what} {path} is a folder; give a file path")
    make_dir(path.parent, f"{what}'s folder")
    return path


def _probe(folder: Path) -> None:
    # os.access() says yes to root even on a read-only file system: try a real write instead.
    fd, name = tempfile.mkstemp(prefix=PROBE_PREFIX, dir=folder)
    os.close(fd)
    os.unlink(name)
