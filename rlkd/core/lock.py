"""One writer per run folder: an exclusive advisory lock held for the life of a train or resume.

The lock is ``flock`` on ``<run>/.lock``, so the operating system releases it when the holding
process exits, however it exits (SIGKILL included): a crash never leaves a run locked. The file
holds the holder's PID and command, which a second writer names in its error. Readers (``rlkd
eval``, ``report``, ``tb``) take no lock and work on a live run. POSIX only, like the rest of the
run-folder code.
"""

from __future__ import annotations

import fcntl
import os
import time
from pathlib import Path

from rlkd.errors import UserError

LOCK_NAME = ".lock"


class RunLock:
    """An exclusive lock on a run folder, released by :meth:`release` or when the process dies.

    Taking the lock writes nothing: the holder's checks may still refuse the start, and a refused
    start leaves the folder as it found it (:meth:`abandon`). Once they pass, :meth:`announce`
    writes the holder's PID and command into the lock file for a second writer's message.

    Args:
        folder: The run folder (must exist).
        command: What holds it (``rlkd train``, ``rlkd resume``), for a second writer's message.

    Raises:
        UserError: Another process holds the lock (its PID is in the message).
    """

    def __init__(self, folder: Path, command: str) -> None:
        self.path, self.command = folder / LOCK_NAME, command
        self._created = not self.path.exists()
        self._fd: int | None = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(self._fd)
            os.close(self._fd)
            self._fd = None
            raise UserError(
                f"run folder {folder} is being written by {holder}; wait for it to end or stop it "
                "(rlkd eval/report/tb can read a live run)"
            ) from None

    def announce(self) -> None:
        """Write the holder (PID and command) into the lock file, once the start is accepted."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            os.pwrite(self._fd, f"process {os.getpid()} ({self.command})\n".encode(), 0)

    def release(self) -> None:
        """Release the lock (idempotent). The lock file stays; it means nothing while unlocked."""
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor releases the flock
            self._fd = None

    def abandon(self) -> None:
        """Release the lock of a refused start, removing the lock file if this lock made it."""
        held = self._fd is not None
        self.release()
        if held and self._created:
            self.path.unlink(missing_ok=True)


def _holder(fd: int) -> str:
    """What the lock file says holds it. The holder writes it once its start is accepted, so an
    empty file is read again for up to 0.5 s before falling back to "another process"."""
    for _ in range(50):
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip()
        if holder:
            return holder
        time.sleep(0.01)
    return "another process"
