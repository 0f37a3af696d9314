"""Typed run configurations, named presets, YAML files and the command-line options built from them.

Every agent has one dataclass deriving from :class:`TrainConfig`. Each field carries exactly one
docstring (the string literal right under it), which is what ``rlkd train --help`` prints, so
the help text and the code never drift apart. Values are resolved in this order, later wins:
dataclass defaults < preset < ``--config FILE.yaml`` < individual command-line options.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import inspect
import itertools
import math
import textwrap
import types
import typing
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import yaml

from rlkd.errors import UserError

C = TypeVar("C", bound="TrainConfig")


@dataclasses.dataclass
class TrainConfig:
    """Fields every agent shares: what to train on, for how long, where to write."""

    agent: str = "ppo"
    """Agent to train: ppo, dreamer or diswm."""
    env_id: str = "rlkd/AGVWarehouse-v0"
    """Environment id: an envpool id, a Gymnasium id (also module:Env-v0), or an rlkd/ id."""
    env_backend: str = "auto"
    """Vector-env backend: auto, envpool or gymnasium."""
    env_kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Extra keyword arguments for the environment constructor (YAML mapping, merged into the preset's)."""
    num_envs: int = 16
    """Number of parallel environments."""
    total_steps: int = 500_000
    """Total environment steps (summed over parallel environments) to train for."""
    seed: int = 1
    """Seed of every random number generator (torch, numpy, environments)."""
    device: str = "cpu"
    """Torch device: cpu or cuda."""
    torch_threads: int = 0
    """Torch intra-op threads; 0 picks 1 for MLP agents (more add only sync overhead), else the default."""
    preset: str = ""
    """Name of the preset this config started from (recorded for reference)."""
    run_dir: str = ""
    """Exact run folder to write; empty creates runs_root/<env>__<agent>__<seed>__<time>."""
    runs_root: str = "runs"
    """Folder in which named run folders are created."""
    checkpoint_interval: int = 50_000
    """Write a checkpoint every this many environment steps (and at the end)."""
    keep_checkpoints: int = 3
    """How many most recent step checkpoints to keep on disk."""
    log_interval: int = 2_048
    """Log scalars to TensorBoard at most every this many environment steps."""
    capture_video: int = 0
    """Record one episode (most likely actions, a separate env) every this many env steps to
    <run>/videos/step_<N>.gif and TensorBoard's videos/episode; 0: never."""
    track: bool = False
    """Mirror the run to Weights & Biases (offline unless WANDB_MODE=online; needs rlkd[track])."""
    wandb_project: str = "rlkd"
    """W&B project of --track."""
    nproc: int = 1
    """Processes (ranks) training together, data-parallel on torch.distributed: `rlkd train --nproc N`
    starts N on this machine; under torchrun it is the world size torchrun gives. Each rank steps
    its own num_envs envs (PPO only; see README "Scaling out")."""
    on_nonfinite: str = "stop"
    """A NaN/inf loss or gradient: stop (one error line, last good checkpoint kept) or skip (skip that
    optimizer step, counted as charts/skipped_updates). NaN/inf from the env always stops."""

    def validate(self) -> None:
        """Check values that no type annotation can express; raise :class:`UserError`."""
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, float) and not math.isfinite(value):
                raise UserError(f"--{_flag(f.name)} must be a finite number, got {value}")
        positive = ("num_envs", "nproc", "total_steps", "checkpoint_interval", "keep_checkpoints",
                    "log_interval")  # fmt: skip
        check_ranges(self, positive=positive, non_negative=("seed", "capture_video"))
        from rlkd.core.guard import NONFINITE_MODES

        if self.env_backend not in BACKENDS:
            raise UserError(f"--env-backend must be {_choices(BACKENDS)}, got {self.env_backend!r}")
        check_device(self.device)
        if self.on_nonfinite not in NONFINITE_MODES:
            raise UserError(f"--on-nonfinite must be {_choices(NONFINITE_MODES)}, got {self.on_nonfinite!r}")
        if self.torch_threads < 0:
            raise UserError(f"--torch-threads must be 0 (automatic) or positive, got {self.torch_threads}")


BACKENDS = ("auto", "envpool", "gymnasium")
"""The values of ``--env-backend`` (``rlkd.envs.make_vec`` reads them from here)."""


def _choices(names: Sequence[str]) -> str:
    """``a, b or c``."""
    return f"{', '.join(names[:-1])} or {names[-1]}" if len(names) > 1 else names[0]


def check_device(device: str) -> None:
    """Raise :class:`UserError` unless ``device`` is cpu or a CUDA device torch can see."""
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise UserError(f"--device must be cpu or cuda, got {device!r}")
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise UserError(f"--device {device}: torch sees no CUDA device here; use --device cpu")


def check_ranges(
    cfg: TrainConfig,
    positive: Sequence[str] = (),
    non_negative: Sequence[str] = (),
    unit: Sequence[str] = (),
) -> None:
    """Raise a one-line :class:`UserError` naming the first field outside its range.

    Args:
        cfg: The config.
        positive: Fields that must be > 0.
        non_negative: Fields that must be >= 0.
        unit: Fields that must lie in [0, 1] (discounts, mixing weights).

    A field that is None ("use the default") is not checked.
    """
    for names, ok, rule in (
        (positive, lambda v: v > 0, "positive"),
        (non_negative, lambda v: v >= 0, ">= 0"),
        (unit, lambda v: 0 <= v <= 1, "in [0, 1]"),
    ):
        for name in names:
            if getattr(cfg, name) is not None and not ok(getattr(cfg, name)):
                raise UserError(f"--{_flag(name)} must be {rule}, got {getattr(cfg, name)}")


def _flag(name: str) -> str:
    return name.replace("_", "-")


@cache
def field_docs(cls: type) -> dict[str, str]:
    """Return ``{field: docstring}`` read from the attribute docstrings of ``cls`` and its bases."""
    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        tree = ast.parse(textwrap.dedent(inspect.getsource(klass)))
        body = tree.body[0].body  # type: ignore[attr-defined]
        for node, nxt in itertools.pairwise(body):
            if (
                isinstance(node, ast.AnnAssign)
                and isinstance(node.target, ast.Name)
                and isinstance(nxt, ast.Expr)
                and isinstance(nxt.value, ast.Constant)
                and isinstance(nxt.value.value, str)
            ):
                docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def _field_type(cls: type, name: str) -> Any:
    return typing.get_type_hints(cls)[name]


def _coerce(cls: type, name: str, value: Any) -> Any:
    """Convert a YAML or command-line value to the declared type of field ``name``."""
    tp = _field_type(cls, name)
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None or value == "none":
            return None
        tp = args[0]
        origin = typing.get_origin(tp)
    try:
        if tp is bool:
            if isinstance(value, bool):
                return value
            if str(value).lower() in ("1", "true", "yes", "on"):
                return True
            if str(value).lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if tp is int:
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(float(value)) if isinstance(value, str) and "e" in value.lower() else int(value)
        if tp is float:
            return float(value)
        if tp is str:
            # YAML 1.1 reads a bare on/off/yes/no as a bool; string fields mean "on"/"off" there.
            return ("on" if value else "off") if isinstance(value, bool) else str(value)
        if origin is dict:
            if isinstance(value, str):
                value = read_yaml_text(value, f"--{_flag(name)}")
            if not isinstance(value, Mapping):
                raise ValueError
            return dict(value)
        if origin in (tuple, list):
            if isinstance(value, str):
                value = [v for v in value.replace(",", " ").split()]
            (item_tp, *_rest) = typing.get_args(tp) or (str,)
            return origin(item_tp(v) for v in value)
    except (TypeError, ValueError):
        pass
    else:
        return value
    raise UserError(f"--{_flag(name)} expects {getattr(tp, '__name__', tp)}, got {value!r}")


def apply_overrides(cfg: C, overrides: Mapping[str, Any], source: str) -> C:
    """Return a copy of ``cfg`` with ``overrides`` applied; unknown keys fail with close matches."""
    names = [f.name for f in dataclasses.fields(cfg)]
    changes = {}
    for key, value in overrides.items():
        k = key.replace("-", "_")
        if k not in names:
            close = difflib.get_close_matches(k, names, n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UserError(f"unknown config field {key!r} in {source}{hint}")
        value = _coerce(type(cfg), k, value)
        if isinstance(value, dict):
            # Mappings (env_kwargs) merge into what the preset or file set, so --env-kwargs
            # "{max_episode_steps: 1000}" keeps a preset's other env options.
            value = {**getattr(cfg, k), **value}
        changes[k] = value
    return dataclasses.replace(cfg, **changes)


def to_dict(cfg: TrainConfig) -> dict[str, Any]:
    """Plain-data view of a config, as written to ``config.yaml``."""
    return {f.name: _plain(getattr(cfg, f.name)) for f in dataclasses.fields(cfg)}


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def save_yaml(cfg: TrainConfig, path: Path, header: str = "") -> None:
    """Write ``cfg`` to ``path`` as YAML (atomically: a half-written config is never read back).

    ``header`` lines are written first as YAML comments (provenance; readers ignore them).
    """
    tmp = path.with_suffix(path.suffix + ".tmp")
    comments = "".join(f"# {line}\n" for line in header.splitlines())
    tmp.write_text(comments + yaml.safe_dump(to_dict(cfg), sort_keys=False))
    tmp.replace(path)


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, turning every failure into a one-line :class:`UserError`."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise UserError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read config file {path}: {exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise UserError(f"config file {path} is not valid YAML{where}: fix or regenerate it") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of field: value, got {type(data).__name__}")
    return data


def read_presets(path: Path) -> dict[str, dict[str, Any]]:
    """An agent's presets file: preset name -> field overrides (each a mapping)."""
    presets = read_yaml(path)
    for name, fields in presets.items():
        if not isinstance(fields, dict):
            raise UserError(f"preset {name!r} in {path} must be a mapping of field: value")
    return presets


def read_yaml_text(text: str, source: str) -> dict[str, Any]:
    """Parse a YAML mapping given on the command line (e.g. ``--env-kwargs "{a: 1}"``)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        raise UserError(
            f'{source} is not valid YAML: {text!r} (write a mapping like "{{key: value}}")'
        ) from None
    if not isinstance(data, dict):
        raise UserError(f'{source} must be a YAML mapping like "{{key: value}}", got {text!r}')
    return data


def from_dict(cls: type[C], data: Mapping[str, Any], source: str) -> C:
    """Build a config of type ``cls`` from a mapping (e.g. a saved ``config.yaml``)."""
    cfg = apply_overrides(cls(), data, source)
    cfg.validate()
    return cfg


def add_field_options(parser: argparse.ArgumentParser, cls: type[TrainConfig], skip: set[str]) -> None:
    """Add one ``--flag`` per dataclass field (help text from the field docstring).

    Options default to ``argparse.SUPPRESS`` so only what the user typed becomes an override.
    """
    docs = field_docs(cls)
    defaults = cls()
    group = parser.add_argument_group(f"{cls.__name__} fields (defaults shown before presets apply)")
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        tp = _field_type(cls, f.name)
        help_text = f"{docs.get(f.name, '')} (default: {getattr(defaults, f.name)!r})"
        if tp is bool:
            group.add_argument(
                f"--{_flag(f.name)}",
                action=argparse.BooleanOptionalAction,
                default=argparse.SUPPRESS,
                help=help_text,
            )
        else:
            group.add_argument(
                f"--{_flag(f.name)}", dest=f.name, default=argparse.SUPPRESS, metavar="V", help=help_text
            )


def resolve(
    cls: type[C],
    presets: Mapping[str, Mapping[str, Any]],
    preset: str | None,
    config_file: str | None,
    cli: Mapping[str, Any],
) -> C:
    """Resolve defaults < preset < YAML file < command line into a validated config."""
    cfg = cls()
    if preset:
        if preset not in presets:
            close = difflib.get_close_matches(preset, list(presets), n=3)
            hint = f"; did you mean {', '.join(close)}?" if close else ""
            raise UserError(
                f"unknown preset {preset!r} for agent {cfg.agent}{hint} (known: {', '.join(presets)})"
            )
        cfg = apply_overrides(cfg, {**presets[preset], "preset": preset}, f"preset {preset!r}")
    if config_file:
        cfg = apply_overrides(cfg, read_yaml(config_file), config_file)
    cfg = apply_overrides(cfg, cli, "the command line")
    cfg.validate()
    return cfg
