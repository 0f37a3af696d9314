"""``rlkd tb``: start the real TensorBoard server on loopback for a runs folder and print its URL."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from rlkd.errors import UserError

HOST = "127.0.0.1"
"""Loopback only: run data is not published to the network unless the user runs TensorBoard themselves."""


def free_port(host: str = HOST) -> int:
    """A TCP port that is free on ``host`` right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def launch_tensorboard(logdir: Path, port: int = 0, timeout_s: float = 90.0) -> tuple[subprocess.Popen, str]:
    """Start ``python -m tensorboard.main`` on ``127.0.0.1`` and wait until it answers HTTP.

    Args:
        logdir: A run folder or a folder of run folders (``runs/``).
        port: Port to listen on; 0 picks a free one.
        timeout_s: How long to wait for the server to answer before giving up.

    Returns:
        The server process (the caller must terminate it, e.g. with :func:`stop`) and its URL.

    Raises:
        UserError: If ``logdir`` is not a folder, or the server exits or does not answer in time
            (the message carries the end of TensorBoard's own output).
    """
    logdir = Path(logdir)
    if not logdir.is_dir():
        raise UserError(f"{logdir} is not a folder; give a run folder or a runs root such as runs/")
    # A port picked by free_port can in principle be taken before TensorBoard binds it; retry then.
    attempts = 1 if port else 3
    last_error = ""
    for _ in range(attempts):
        chosen = port or free_port()
        # TensorBoard's output goes to a file, not a pipe: nobody reads a pipe while it serves, and a
        # full pipe would block the server.
        log = tempfile.NamedTemporaryFile(prefix="rlkd-tb-", suffix=".log", delete=False)  # noqa: SIM115
        cmd = [
            sys.executable,
            "-m",
            "tensorboard.main",
            "--logdir",
            str(logdir.resolve()),
            "--host",
            HOST,
            "--port",
            str(chosen),
        ]
        # Own session: Ctrl-C in the terminal reaches only us, and we stop the server cleanly.
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        log.close()
        url = f"http://{HOST}:{chosen}/"
        try:
            if _wait_until_up(proc, url, timeout_s):
                # The server keeps writing to its open descriptor; the name is only needed on failure.
                Path(log.name).unlink(missing_ok=True)
                return proc, url
        except BaseException:
            stop(proc)
            raise
        stop(proc)
        last_error = _tail(Path(log.name))
        if "already in use" not in last_error.lower():
            break
    raise UserError(f"TensorBoard did not start on {HOST}: {last_error or 'no answer in time'}")


def _wait_until_up(proc: subprocess.Popen, url: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return True
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass  # not listening yet
        time.sleep(0.2)
    return False


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(errors="replace").strip().splitlines()
    except OSError:
        return ""
    finally:
        path.unlink(missing_ok=True)
    return " | ".join(line.strip() for line in text[-lines:])


def stop(proc: subprocess.Popen, timeout_s: float = 10.0) -> None:
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
    # us: turn them into the Ctrl-C path so the server stops with us instead of outliving us.
    handlers = {sig: signal.signal(sig, _interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
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
