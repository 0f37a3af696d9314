"""``rlkd tb``: start the real TensorBoard server on loopback for a runs folder and print its URL."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rlkd.errors import UserError

HOST = "127.0.0.1"
"""Loopback only: run data is not published to the network unless the user runs TensorBoard themselves."""


def launch_tensorboard(logdir: Path, port: int = 0, timeout_s: float = 90.0) -> tuple[subprocess.Popen, str]:
    """Start ``python -m tensorboard.main`` on ``127.0.0.1`` and wait until it says where it serves.

    Args:
        logdir: A run folder or a folder of run folders (``runs/``).
        port: Port to listen on; 0 lets the OS pick a free one (TensorBoard's ``--port 0``).
        timeout_s: How long to wait for the server to announce its URL before giving up.

    Returns:
        The server process (the caller must terminate it, e.g. with :func:`stop`) and its URL.

    Raises:
        UserError: If ``logdir`` is not a folder, or the server exits or does not start in time
            (the message carries the end of TensorBoard's own output).
    """
    logdir = Path(logdir)
    if not logdir.is_dir():
        raise UserError(f"{logdir} is not a folder; give a run folder or a runs root such as runs/")
    # TensorBoard's output goes to a file, not a pipe: nobody reads a pipe while it serves, and a
    # full pipe would block the server.
    log = tempfile.NamedTemporaryFile(prefix="rlkd-tb-", suffix=".log", delete=False)  # noqa: SIM115
    cmd = [sys.executable, "-m", "tensorboard.main", "--logdir", str(logdir.resolve()), "--host", HOST,
           "--port", str(port)]  # fmt: skip
    # Own session: Ctrl-C in the terminal reaches only us, and we stop the server cleanly.
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    log.close()
    try:
        url = _announced_url(proc, Path(log.name), timeout_s)
    except BaseException:
        stop(proc)
        raise
    if url is None:
        stop(proc)
        why = _tail(Path(log.name)) or "no answer in time"
        raise UserError(f"TensorBoard did not start on {HOST}: {why}")
    Path(log.name).unlink(missing_ok=True)  # the server keeps its open descriptor
    return proc, url


def _announced_url(proc: subprocess.Popen, log: Path, timeout_s: float) -> str | None:
    """The URL in TensorBoard's "TensorBoard x.y at http://HOST:PORT/" line, once it is listening."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        found = re.search(rf"http://{re.escape(HOST)}:\d+/", log.read_text(errors="replace"))
        if found:
            return found.group(0)
        time.sleep(0.2)
    return None


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    finally:
        path.unlink(missing_ok=True)
    return " | ".join(line.strip() for line in text[-lines:])


def stop(proc: subprocess.Popen, timeout_s: float = 5.0) -> None:
    """Terminate the server process, killing it if it does not exit within ``timeout_s``."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def serve(logdir: Path | str = "runs", port: int = 0) -> None:
    """Launch TensorBoard for ``logdir``, print its URL, and serve until Ctrl-C (then stop it).

    Raises:
        UserError: If the server cannot start or exits on its own.
    """
    proc, url = launch_tensorboard(Path(logdir), port)
    # The server runs in its own session, so a SIGTERM or SIGHUP (kill, a closed terminal) reaches only
    # us: turn them into the Ctrl-C path so the server stops with us instead of outliving us. SIGINT is
    # set too: a process started in the background by a shell begins with SIGINT ignored, and Python
    # then installs no Ctrl-C handler of its own (`kill -INT` would do nothing).
    stop_signals = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    handlers = {sig: signal.signal(sig, _interrupt) for sig in stop_signals}
    try:
        # Printed inside the try: a Ctrl-C right after the URL appears must still stop the server.
        print(f"TensorBoard for {logdir} at {url}  (Ctrl-C to stop)", flush=True)
        code = proc.wait()
    except KeyboardInterrupt:
        print("stopping TensorBoard", file=sys.stderr)
        return
    finally:
        stop(proc)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
    raise UserError(f"TensorBoard exited on its own with status {code}")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt
