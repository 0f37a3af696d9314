"""Tests of ``rlkd tb``: the real TensorBoard server on loopback, serving a run's scalars."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml

from rlkd.cli.tb import HOST, launch_tensorboard, stop
from rlkd.core.run import Run
from rlkd.errors import UserError

RUN = "CartPole-v1__ppo__1__20250101-000000"


def _write_run(root: Path) -> None:
    path = root / RUN
    path.mkdir(parents=True)
    config = {"agent": "ppo", "env_id": "CartPole-v1", "seed": 1}
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    run = Run(path, config)
    for step in (100, 200):
        run.log_scalars(step, {"charts/episodic_return": step / 10, "losses/value_loss": 1.0})
    run.close()


def _get_json(url: str, timeout_s: float = 30.0, want: str = "") -> dict:
    """GET ``url`` until its JSON mentions ``want`` (TensorBoard loads the logdir in the background)."""
    deadline = time.monotonic() + timeout_s
    while True:
        with urllib.request.urlopen(url, timeout=5) as resp:
            data = json.loads(resp.read())
        if want in json.dumps(data) or time.monotonic() > deadline:
            return data
        time.sleep(0.3)


def test_server_answers_with_run_tags_on_loopback(tmp_path: Path) -> None:
    _write_run(tmp_path)
    proc, url = launch_tensorboard(tmp_path)
    try:
        assert url.startswith(f"http://{HOST}:") and proc.poll() is None
        tags = _get_json(url + "data/plugin/scalars/tags", want="charts/episodic_return")
        assert RUN in tags
        assert {"charts/episodic_return", "losses/value_loss"} <= set(tags[RUN])
        query = f"data/plugin/scalars/scalars?run={RUN}&tag=charts/episodic_return"
        with urllib.request.urlopen(url + query, timeout=5) as resp:
            points = json.loads(resp.read())  # [[wall_time, step, value], ...]
        assert [(p[1], p[2]) for p in points] == [(100, 10.0), (200, 20.0)]
    finally:
        stop(proc)
    assert proc.poll() is not None
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=2)


def test_missing_logdir_is_a_user_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="is not a folder"):
        launch_tensorboard(tmp_path / "nope")


def _ignore_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # what a shell does to a job it starts with `&`


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
@pytest.mark.parametrize("background", [False, True], ids=["foreground", "background"])
def test_serve_stops_the_server_on_ctrl_c_kill_and_hangup(tmp_path: Path, sig: int, background: bool) -> None:
    _write_run(tmp_path)
    code = f"from rlkd.cli.tb import serve; serve({str(tmp_path)!r})"
    proc = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        preexec_fn=_ignore_sigint if background else None,
    )  # fmt: skip
    try:
        line = proc.stdout.readline()  # blocks until serve prints the URL (or exits)
        assert f"http://{HOST}:" in line, proc.stderr.read() if proc.poll() is not None else line
        url = line.split(" at ")[1].split()[0]
        with urllib.request.urlopen(url, timeout=5) as resp:
            assert resp.status == 200
        os.kill(proc.pid, sig)  # Ctrl-C, kill, a closed terminal
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    with pytest.raises(urllib.error.URLError):  # the server went down with it
        urllib.request.urlopen(url, timeout=2)
