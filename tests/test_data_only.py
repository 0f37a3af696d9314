"""No code from any file rlkd reads: monitor files are data only, and the package never unpickles."""

from __future__ import annotations

import ast
import os
import pickle
import re
import shutil
from pathlib import Path

import pytest
import rlkd.agents
import rlkd.envs
import torch

import rlkd
from rlkd.cli import main
from rlkd.errors import UserError
from tests.test_reliability import error_line


class Hostile:
    """Unpickling this makes the folder ``path``: what a malicious ``monitor.pt`` would do."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self):
        return (os.mkdir, (self.path,))


@pytest.fixture(scope="module")
def monitored(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PPO run on CartPole with a calibrated monitor (kept pristine: tests copy it)."""
    run_dir = tmp_path_factory.mktemp("data_only") / "ppo"
    assert main(["train", "--preset", "debug", "--run-dir", str(run_dir), "--torch-threads", "1"]) == 0
    argv = ["monitor", "calibrate", str(run_dir), "--episodes", "12", "--alpha", "0.2", "--updates", "20"]
    assert main(argv) == 0
    return run_dir


@pytest.fixture
def run_copy(monitored: Path, tmp_path: Path) -> Path:
    run = tmp_path / "run"
    shutil.copytree(monitored, run)
    return run


def test_the_monitor_file_calibrate_writes_is_plain_data(monitored: Path) -> None:
    state = torch.load(monitored / "monitor" / "monitor.pt", weights_only=True)
    assert isinstance(state["thresholds"]["novelty"], float) and isinstance(state["dims"]["obs_dim"], int)
    assert isinstance(state["novelty"]["module.predictor.0.weight"], torch.Tensor)


@pytest.mark.parametrize("fmt", ["torch", "raw pickle"])
def test_a_hostile_monitor_file_runs_nothing_and_is_one_error_line(
    run_copy: Path, tmp_path: Path, capsys: pytest.CaptureFixture, fmt: str
) -> None:
    good = torch.load(run_copy / "monitor" / "monitor.pt", weights_only=True)
    marker = tmp_path / "pwned"
    state = {**good, "thresholds": Hostile(marker)}  # otherwise a valid monitor of this run
    target = run_copy / "monitor" / "monitor.pt"
    if fmt == "torch":
        torch.save(state, target)
        torch.load(target, weights_only=False)  # the file is truly hostile: a plain load runs it
    else:
        target.write_bytes(pickle.dumps(state))
        pickle.loads(target.read_bytes())
    assert marker.is_dir()
    marker.rmdir()
    for argv in (["monitor", "eval", str(run_copy), "--episodes", "2"],
                 ["eval", str(run_copy), "--episodes", "1", "--monitor"]):  # fmt: skip
        err = error_line(capsys, argv)
        assert "monitor.pt" in err
        if fmt == "torch":  # torch's format: the restricted unpickler names the refused call
            assert "refused" in err and "weights_only=True" in err
        else:  # a bare pickle (protocol 4 framing) is not torch's format at all
            assert "is corrupt, truncated or not a monitor file" in err
        assert not marker.exists()
    with pytest.raises(UserError, match="refused" if fmt == "torch" else "is corrupt"):
        rlkd.load(run_copy).monitor()
    assert not marker.exists() and not (run_copy / "monitor" / "eval").exists()


@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        ("truncated", "is corrupt, truncated or not a monitor file"),
        ("garbage", "is corrupt, truncated or not a monitor file"),
        ("empty", "is corrupt, truncated or not a monitor file"),
        ("foreign", "is not a monitor file rlkd can read (KeyError"),
        ("not a dict", "is not a monitor file rlkd can read (TypeError"),
        ("wrong shapes", "is not a monitor file rlkd can read (RuntimeError"),
    ],
)
def test_a_damaged_monitor_file_is_one_error_line(
    run_copy: Path, capsys: pytest.CaptureFixture, damage: str, expected: str
) -> None:
    target = run_copy / "monitor" / "monitor.pt"
    good = target.read_bytes()
    state = torch.load(target, weights_only=True)
    if damage == "truncated":
        target.write_bytes(good[: len(good) // 2])
    elif damage == "garbage":
        target.write_bytes(b"\x80\x04not a pickle at all" * 10)
    elif damage == "empty":
        target.write_bytes(b"")
    elif damage == "foreign":
        torch.save({"weights": torch.zeros(3)}, target)
    elif damage == "not a dict":
        torch.save([1, 2, 3], target)
    else:
        key = "module.predictor.0.weight"
        state["novelty"][key] = torch.zeros(3, 3)
        torch.save(state, target)
    err = error_line(capsys, ["monitor", "eval", str(run_copy), "--episodes", "2"])
    assert expected in err and f"rlkd monitor calibrate {run_copy}` again" in err


PACKAGE_DIRS = [Path(m.__file__).parent for m in (rlkd, rlkd.envs, rlkd.agents)]
# Anything that would turn bytes from a file into running code.
FORBIDDEN = re.compile(
    r"weights_only\s*=\s*False|allow_pickle\s*=\s*True|import pickle|from pickle|pickle\.loads?\b|"
    r"Unpickler|cloudpickle|import dill|import marshal|marshal\.loads?\b|yaml\.load\(|yaml\.unsafe_load|"
    r"UnsafeLoader|FullLoader"
)


def _sources() -> list[Path]:
    files = sorted({p for d in PACKAGE_DIRS for p in d.rglob("*.py")})
    assert len(files) > 40 and any(p.name == "workflow.py" for p in files)  # the installed tree
    return files


def test_no_package_source_unpickles_or_loads_without_weights_only() -> None:
    hits = [
        f"{path}:{n}: {line.strip()}"
        for path in _sources()
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if FORBIDDEN.search(line)
    ]
    assert hits == []


def test_every_torch_load_call_passes_weights_only_true() -> None:
    calls, bad = 0, []
    for path in _sources():
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            if node.func.attr != "load" or not isinstance(node.func.value, ast.Name):
                continue
            if node.func.value.id != "torch":
                continue
            calls += 1
            flag = {k.arg: k.value for k in node.keywords}.get("weights_only")
            if not (isinstance(flag, ast.Constant) and flag.value is True):
                bad.append(f"{path}:{node.lineno}")
    assert calls >= 1 and bad == []


def test_the_grep_finds_what_it_looks_for() -> None:
    # The patterns above would catch the lines this file guards against.
    for line in ("torch.load(p, weights_only=False)", "import pickle", "data = pickle.load(fh)",
                 "np.load(p, allow_pickle=True)", "yaml.load(text)"):  # fmt: skip
        assert FORBIDDEN.search(line), line
    assert not FORBIDDEN.search("torch.load(p, weights_only=True)")
