"""Run folders: config, TensorBoard writer, progress display, atomic checkpoints and resume.

A run folder looks like::

    runs/<env>__<agent>__<seed>__<YYYYmmdd-HHMMSS>/
        config.yaml              the resolved config the run uses
        events.out.tfevents.*    TensorBoard scalars (charts/, losses/, intrinsic/, world_model/)
        checkpoints/step_<N>.pt  atomic checkpoints; the newest is the one resume uses

Checkpoints are plain data (tensors, numbers, strings, lists, dicts) so they load with
``torch.load(..., weights_only=True)``: a checkpoint is data, never code.
"""

from __future__ import annotations

import ctypes
import os
import random
import re
import shutil
import sys
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.tensorboard import SummaryWriter

from rlkd.core.config import TrainConfig, save_yaml, to_dict
from rlkd.core.guard import nonfinite_paths
from rlkd.core.lock import LOCK_NAME, RunLock
from rlkd.core.paths import PROBE_PREFIX, make_dir
from rlkd.errors import UserError

CHECKPOINT_FORMAT = "rlkd-checkpoint-v1"
_STEP_FILE = re.compile(r"^step_(\d+)\.pt$")


def provenance() -> str:
    """Who wrote a config: rlkd's version, the git commit of its source (when in a checkout, with
    "+ local changes" if dirty), the time and the command line."""
    import shlex
    import subprocess
    from importlib.metadata import PackageNotFoundError, version

    try:
        text = f"rlkd {version('rlkd')}"
    except PackageNotFoundError:
        text = "rlkd (not installed)"
    source = str(Path(__file__).resolve().parent)

    def git(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(["git", "-C", source, *args], capture_output=True, text=True, timeout=5)

    try:
        commit = git("rev-parse", "--short", "HEAD")
        dirty = git("status", "--porcelain", "--untracked-files=no")
        top = git("rev-parse", "--show-toplevel").stdout.strip()
        # Only rlkd's own checkout: an rlkd installed inside a user's repository is not that repository.
        if commit.returncode == 0 and top and Path(top).resolve() == Path(source).parent.resolve():
            text += f", commit {commit.stdout.strip()}" + (" + local changes" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        pass  # no git here: version only
    command = " ".join(shlex.quote(a) for a in sys.argv)
    return f"{text}, written {time.strftime('%Y-%m-%d %H:%M:%S')}\ncommand: {command}"


def sanitize(name: str) -> str:
    """Make an env id usable in a folder name (``rlkd/AGV-v0`` -> ``rlkd-AGV-v0``)."""
    return re.sub(r"[^A-Za-z0-9._+-]+", "-", name).strip("-")


def run_name(cfg: TrainConfig, agent_label: str) -> str:
    """``<env>__<agent>__<seed>__<YYYYmmdd-HHMMSS>``, the run-folder name of docs/design.md."""
    return f"{sanitize(cfg.env_id)}__{agent_label}__{cfg.seed}__{time.strftime('%Y%m%d-%H%M%S')}"


def seed_everything(seed: int) -> None:
    """Seed Python, numpy's legacy global generator and torch."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Capture the global RNG states as checkpoint-safe data."""
    np_state = np.random.get_state()
    return {
        "python": _to_lists(random.getstate()),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "gauss": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
        "cuda": [s for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state(
        ("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"])
    )
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_lists(obj: Any) -> Any:
    return [_to_lists(o) for o in obj] if isinstance(obj, tuple | list) else obj


def keep_freed_memory() -> None:
    """Ask glibc to keep freed large blocks instead of returning them to the OS.

    Training allocates and frees tens of MB per minibatch; by default glibc unmaps such blocks and
    maps them again next time, and the page faults took ~20% of a PPO+RND Atari iteration on CPU
    (bench/bench_atari.py). The cost: the process keeps its peak memory. No-op off glibc.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return
    m_trim_threshold, m_mmap_threshold = -1, -3
    libc.mallopt(m_mmap_threshold, 1 << 30)  # C int: larger values are rejected silently
    libc.mallopt(m_trim_threshold, 1 << 30)


def atomic_torch_save(obj: Any, path: Path) -> None:
    """Write ``obj`` to ``path`` so that a reader sees either the old file or the whole new one."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    with open(tmp, "wb") as fh:
        torch.save(obj, fh)
        fh.flush()
        os.fsync(fh.fileno())
    tmp.replace(path)


def load_data_file(path: Path, what: str, fix: str) -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain values only, never code.

    Args:
        path: The file.
        what: What the file is, for messages (``"checkpoint"``, ``"monitor file"``).
        fix: What to do about a damaged file, the end of its message.

    Raises:
        UserError: One line for a missing, damaged or foreign file, or one that asks for Python objects.
    """
    try:
        with warnings.catch_warnings():
            # torch warns before it reads a foreign pickle protocol; the error below says it all.
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise UserError(f"{what} {path} does not exist") from None
    except Exception as exc:  # torch raises many types for truncated/corrupt/foreign pickles
        # torch's restricted unpickler refuses a GLOBAL (a class or function to call) it does not
        # know before calling anything; its other failures are bytes that are no pickle at all.
        if "Weights only load failed" in str(exc) and "GLOBAL" in str(exc):
            raise UserError(
                f"{what} {path} refused: it holds Python objects, not only tensors and plain data, and "
                "rlkd loads it with weights_only=True (a file rlkd reads is data, never code)"
            ) from None
        raise UserError(
            f"{what} {path} is corrupt, truncated or not a {what} ({type(exc).__name__}); {fix}"
        ) from None


def load_checkpoint_file(path: Path) -> dict[str, Any]:
    """Load and validate one checkpoint file; every failure is a one-line :class:`UserError`."""
    data = load_data_file(path, "checkpoint", "delete it to fall back to the previous one")
    if not isinstance(data, dict) or data.get("format") != CHECKPOINT_FORMAT:
        raise UserError(f"{path} is not an rlkd checkpoint (no {CHECKPOINT_FORMAT!r} marker)")
    return data


def load_state(target: Any, state: Mapping[str, Any], what: str) -> None:
    """``target.load_state_dict(state)``, where a mismatch is one :class:`UserError`.

    A checkpoint that does not fit the networks or optimizers built from ``config.yaml`` means the
    config was edited (or the checkpoint copied in) after the checkpoint was written.
    """
    try:
        target.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError) as exc:
        lines = [ln.strip() for ln in str(exc).splitlines() if ln.strip()]
        detail = (lines[1] if len(lines) > 1 else lines[0] if lines else type(exc).__name__)[:200]
        raise UserError(
            f"the checkpoint's {what} does not fit the networks config.yaml describes ({detail}); "
            "was config.yaml edited? restore it, or train a new run"
        ) from None


BAR_FORMAT = "{desc}: {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}{postfix}]"


@dataclass
class Progress:
    """Live progress: a tqdm bar on a terminal, plain periodic lines otherwise (CI, log files)."""

    total: int
    initial: int
    label: str
    interval_s: float = 10.0
    enabled: bool = True
    """False: show nothing (ranks of a distributed job other than rank 0)."""
    _bar: Any = None
    _last_print: float = field(default_factory=time.monotonic)
    _last: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(
                total=self.total,
                initial=self.initial,
                desc=self.label,
                unit="step",
                unit_scale=True,
                dynamic_ncols=True,
                # No tqdm rate: the one throughput shown is the loop's SPS (env steps per second of
                # training), which tqdm's smoothed rate of display updates would contradict.
                bar_format=BAR_FORMAT,
            )

    def update(self, step: int, **info: float) -> None:
        """Report that training reached ``step``; ``info`` values (e.g. SPS, return) are shown."""
        self._last.update({k: v for k, v in info.items() if v is not None and np.isfinite(v)})
        text = " ".join(f"{k}={v:.4g}" for k, v in self._last.items())
        # An agent that works in whole rollouts may end past the total (PPO: ceil(total / batch)
        # rollouts): the total grows to the real end instead of the bar running past 100%.
        self.total = max(self.total, step)
        if self._bar is not None:
            self._bar.total = self.total
            self._bar.update(step - self._bar.n)
            self._bar.set_postfix_str(text, refresh=False)
        elif not self.enabled:
            return
        elif time.monotonic() - self._last_print >= self.interval_s or step >= self.total:
            self._last_print = time.monotonic()
            print(f"[{self.label}] step {step}/{self.total} {text}", file=sys.stderr, flush=True)

    def note(self, message: str) -> None:
        """A one-off line (a warm-up starting), above the bar on a terminal."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(f"[{self.label}] {message}", file=sys.stderr)
        else:
            print(f"[{self.label}] {message}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class Run:
    """One run folder: writes scalars and checkpoints, and reads them back for resume/eval.

    Args:
        path: The run folder (must exist and hold ``config.yaml``).
        config: The resolved config as plain data.
        purge_step: Step from which earlier-written TensorBoard events are superseded; set on
            resume to the checkpoint's step so curves continue without duplicated steps.
    """

    def __init__(self, path: Path, config: dict[str, Any], purge_step: int | None = None) -> None:
        self.path = path
        self.config = config
        self.checkpoint_dir = path / "checkpoints"
        self.checkpoint_dir.mkdir(exist_ok=True)
        self.purge_step = purge_step
        self._writer: SummaryWriter | None = None
        self._lock: RunLock | None = None
        self._start_message = ""
        self._config_to_save: TrainConfig | None = None
        self._tracker: Any = None
        self.listeners: list[Callable[[int, dict[str, float]], None]] = []
        """Called with (step, scalars) after each log, e.g. by ``rlkd tune`` to report and prune."""

    # ----------------------------------------------------------------- creating and opening
    @classmethod
    def create(cls, cfg: TrainConfig, agent_label: str) -> Run:
        """Make and lock a new run folder for ``cfg`` and save its ``config.yaml``."""
        path = Path(cfg.run_dir) if cfg.run_dir else Path(cfg.runs_root) / run_name(cfg, agent_label)
        make_dir(path, "run folder")
        # Lock before looking: of two starts on one folder, the second sees the first's lock, never
        # a half-made folder it could mistake for an unused one (and delete).
        lock = RunLock(path, "rlkd train")
        # A folder from a start that failed before logging or checkpointing anything (only
        # config.yaml, empty checkpoints/) may be reused; anything more is a run to keep.
        if not cls._never_started(path):
            lock.abandon()  # the folder stays as it was: no lock file left behind
            raise UserError(f"run folder {path} already exists and is not empty; use `rlkd resume {path}`")
        lock.announce()
        save_yaml(cfg, path / "config.yaml", provenance())
        run = cls(path, to_dict(cfg))
        run._lock = lock
        return run

    @staticmethod
    def _never_started(path: Path) -> bool:
        """Whether ``path`` holds nothing but what :meth:`create` writes (config, empty checkpoints/)."""
        made = ("config.yaml", "config.yaml.tmp", "checkpoints", LOCK_NAME)
        # Another start's write probe (paths.make_dir, taken before the lock) may be there for a moment.
        extra = any(p.name not in made and not p.name.startswith(PROBE_PREFIX) for p in path.iterdir())
        return not extra and not any((path / "checkpoints").glob("*"))

    def discard_if_never_started(self) -> None:
        """Remove the folder of a run that failed before it logged or saved anything."""
        self.close()
        if self._lock is not None and self.path.exists() and self._never_started(self.path):
            shutil.rmtree(self.path)
        self.release()

    def lock(self, command: str) -> None:
        """Become the run folder's one writer (see :mod:`rlkd.core.lock`); raises if another holds it.

        Nothing is written until :meth:`announce`; :meth:`abandon` undoes a refused start."""
        self._lock = RunLock(self.path, command)

    def announce(self) -> None:
        """Name this process in the lock file, once its start is accepted."""
        if self._lock is not None:
            self._lock.announce()

    def abandon(self) -> None:
        """Release the lock of a refused start, leaving the folder as it was found."""
        if self._lock is not None:
            self._lock.abandon()
            self._lock = None

    def release(self) -> None:
        """Give up the writer's lock (the OS also releases it when the process ends)."""
        if self._lock is not None:
            self._lock.release()
            self._lock = None

    def on_start(self, message: str, save: TrainConfig | None = None) -> None:
        """What :meth:`start` does: print ``message`` and, for a resume, save its ``config.yaml``."""
        self._start_message, self._config_to_save = message, save

    def start(self) -> None:
        """Called by an agent once its start-up (envs, networks, restored state) has succeeded.

        Only from here on does the run folder change: a resume that cannot start (a checkpoint that
        does not fit an edited config, an env that fails) leaves it as it was, and a new run is
        announced only once it will be kept. The lock file names this process from here on too.
        """
        self.announce()
        if self._config_to_save is not None:
            save_yaml(self._config_to_save, self.path / "config.yaml", provenance())
            self._config_to_save = None
        if self.config.get("track"):
            from rlkd.core import tracking

            project = str(self.config.get("wandb_project", "rlkd"))
            self._tracker = tracking.start(self.path, self.config, project)
            self.listeners.append(lambda step, scalars: self._tracker.log(scalars, step=step))
        if self.purge_step is None:  # a fresh run: its hyperparameters in TensorBoard's HParams view
            self.log_hparams()
        if self._start_message:
            print(self._start_message, file=sys.stderr, flush=True)
            self._start_message = ""

    @classmethod
    def open(cls, path: str | Path) -> Run:
        """Open an existing run folder (for resume or eval)."""
        from rlkd.core.config import read_yaml

        path = Path(path)
        if not (path / "config.yaml").is_file():
            raise UserError(
                f"{path} is not a run folder (no config.yaml); give a folder made by `rlkd train`"
            )
        return cls(path, read_yaml(path / "config.yaml"))

    # ----------------------------------------------------------------- TensorBoard
    @property
    def writer(self) -> SummaryWriter:
        """The TensorBoard writer, opened on first use (with ``purge_step`` on resume)."""
        if self._writer is None:
            self._writer = SummaryWriter(str(self.path), purge_step=self.purge_step)
        return self._writer

    def log_hparams(self) -> None:
        """The config as TensorBoard hyperparameters of this run (HParams tab), in its own event file
        stream (``SummaryWriter.add_hparams`` would make a sub-run folder per call)."""
        from torch.utils.tensorboard.summary import hparams

        values = {k: v if isinstance(v, int | float | str | bool) else str(v) for k, v in self.config.items()}
        metrics = {tag: 0.0 for tag in ("charts/episodic_return", "charts/success_rate")}  # tags, not values
        for summary in hparams(values, metrics):
            self.writer.file_writer.add_summary(summary)

    def log_scalars(self, step: int, scalars: Mapping[str, float | torch.Tensor]) -> None:
        """Write ``{tag: value}`` at ``step``; tags carry their prefix (``charts/``, ``losses/``...)."""
        values = {tag: float(value) for tag, value in scalars.items()}
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)
        for listener in self.listeners:
            listener(step, values)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.flush()
            self._writer.close()
            self._writer = None
        if self._tracker is not None:
            self._tracker.finish()
            self._tracker = None

    # ----------------------------------------------------------------- checkpoints
    def checkpoint_steps(self) -> list[int]:
        """Steps of the checkpoints on disk, oldest first."""
        steps = [int(m.group(1)) for p in self.checkpoint_dir.iterdir() if (m := _STEP_FILE.match(p.name))]
        return sorted(steps)

    def save_checkpoint(self, step: int, state: Mapping[str, Any], keep: int) -> Path:
        """Atomically write ``state`` as the checkpoint of ``step`` and prune old ones.

        Args:
            step: Environment steps done so far.
            state: Plain data: module/optimizer ``state_dict()``s, RNG states, counters.
            keep: How many most recent checkpoints to keep.
        """
        bad = nonfinite_paths(state)
        if bad:
            kept = self.checkpoint_steps()
            raise UserError(
                f"refusing to write the checkpoint of step {step}: NaN/inf in {', '.join(bad[:3])}"
                f"{' and more' if len(bad) > 3 else ''}; "
                + (f"the last good one (step {kept[-1]}) is kept" if kept else "no checkpoint was written")
            )
        payload = {
            "format": CHECKPOINT_FORMAT,
            "agent": self.config.get("agent"),
            "env_id": self.config.get("env_id"),
            "step": int(step),
            "config": self.config,
            "state": dict(state),
        }
        path = self.checkpoint_dir / f"step_{step:012d}.pt"
        # Temp files of writes a kill interrupted hold nothing usable.
        for stale in self.checkpoint_dir.glob(".step_*.pt.tmp*"):
            stale.unlink(missing_ok=True)
        atomic_torch_save(payload, path)
        for old in self.checkpoint_steps()[:-keep]:
            (self.checkpoint_dir / f"step_{old:012d}.pt").unlink(missing_ok=True)
        return path

    def checkpoint_path(self, which: str | int = "latest") -> Path:
        """Path of checkpoint ``which``: ``latest`` or a step number."""
        steps = self.checkpoint_steps()
        if not steps:
            raise UserError(f"run {self.path} has no checkpoints yet (nothing under {self.checkpoint_dir})")
        if which == "latest":
            return self.checkpoint_dir / f"step_{steps[-1]:012d}.pt"
        try:
            step = int(which)
        except ValueError:
            raise UserError(f"--checkpoint must be latest or a step number, got {which!r}") from None
        if step not in steps:
            raise UserError(f"run {self.path} has no checkpoint at step {step}; it has {steps}")
        return self.checkpoint_dir / f"step_{step:012d}.pt"

    def load_checkpoint(self, which: str | int = "latest") -> dict[str, Any]:
        """Load a checkpoint of this run and check that it belongs to this run's agent and env."""
        data = load_checkpoint_file(self.checkpoint_path(which))
        for key in ("agent", "env_id"):
            if data.get(key) != self.config.get(key):
                raise UserError(
                    f"checkpoint {self.checkpoint_path(which)} is for {key}={data.get(key)!r} but this run "
                    f"has {key}={self.config.get(key)!r}; it was copied from another run"
                )
        return data
