"""``rlkd monitor calibrate`` and ``rlkd monitor eval``: roll a run's policy out, fit, threshold, judge.

Calibration rolls the policy out on the run's env (or ``--env``) from seed ``run seed + 20000``,
keeps the successful episodes (all, for envs that report no success), fits the learned scores on the
first ``fit_fraction`` of them and sets the thresholds on the rest. It writes ``<run>/monitor/``
(``monitor.pt``: weights, thresholds and the checkpoint's SHA-256, tensors and plain values only;
``calibration.json``; ``config.yaml``) by renaming a finished temporary folder over it, so a failed
or interrupted calibration leaves the previous one intact. Evaluation rolls out from seed ``run seed + 30000``
(other episodes than calibration's) on any env with the run's spaces and reports each rule.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from rlkd.errors import UserError
from rlkd.monitor.conformal import min_calibration_episodes
from rlkd.monitor.monitor import STATISTICS, Monitor, MonitorConfig
from rlkd.monitor.traces import Episode, Tracer
from rlkd.monitor.views import DEFAULT_VIEW, check_view, step_views

MONITOR_DIR = "monitor"
CALIBRATION_SEED_OFFSET = 20_000
EVAL_SEED_OFFSET = 30_000


@dataclasses.dataclass
class Rollout:
    """Episodes of a run's policy on an env, and what they were run with."""

    episodes: list[Episode]
    run: Any
    step: int
    checkpoint_sha: str
    env_id: str
    env_kwargs: dict[str, Any]
    policy: Any


def checkpoint_sha(run: Any, step: int) -> str:
    """SHA-256 of the checkpoint file of ``step`` (what ties a monitor to its policy)."""
    return hashlib.sha256(run.checkpoint_path(step).read_bytes()).hexdigest()


def roll_out(
    run_dir: Path,
    checkpoint: str | int,
    env_id: str | None,
    env_kwargs: dict[str, Any] | None,
    episodes: int,
    seed_offset: int,
    deterministic: bool,
    views: tuple[str, ...] | None = (),
) -> Rollout:
    """``episodes`` complete episodes of the run's policy, traced step by step.

    Args:
        views: The views of each step kept beside the policy's features (:class:`Tracer`; None: all).

    Raises:
        UserError: No such run or policy, an env whose spaces differ from the run's, or a view the
            policy does not have.
    """
    from rlkd.analysis.evaluate import env_kwargs_of, eval_env, load_run_policy, run_episodes
    from rlkd.core.run import seed_everything

    if episodes < 1:
        raise UserError(f"--episodes must be at least 1, got {episodes}")
    run, data, agent, policy = load_run_policy(run_dir, checkpoint, "cpu")
    step = int(data["step"])
    own = env_kwargs_of(run.config, agent)
    config = dict(run.config)
    if env_id is not None or env_kwargs:
        config["env_id"] = env_id or config["env_id"]
        config["env_kwargs"] = {**(config.get("env_kwargs") or {}), **(env_kwargs or {})}
    kwargs = env_kwargs_of(config, agent)
    seed = int(config.get("seed", 0)) + seed_offset
    reference = eval_env(run.config, own, 1, seed, render=False)
    envs = eval_env(config, kwargs, min(episodes, 8), seed, render=False)
    try:
        _check_spaces(reference, envs, str(run.config["env_id"]), str(config["env_id"]))
        _check_views(policy, reference, views, deterministic)
        seed_everything(seed)
        tracer = Tracer(policy, views)
        run_episodes(
            envs, tracer, episodes, seed, deterministic, False, str(config["env_id"]), on_end=tracer.end
        )
    finally:
        envs.close()
        reference.close()
    extra = {k: v for k, v in kwargs.items() if own.get(k) != v}
    return Rollout(
        tracer.episodes, run, step, checkpoint_sha(run, step), str(config["env_id"]), extra, policy
    )


def _check_spaces(reference: Any, envs: Any, run_env: str, env_id: str) -> None:
    for what in ("single_observation_space", "single_action_space"):
        a, b = getattr(reference, what), getattr(envs, what)
        if type(a) is not type(b) or a.shape != b.shape:
            name = what.removeprefix("single_").replace("_", " ")
            raise UserError(
                f"{env_id}'s {name} {b} differs from the run's ({run_env}: {a}); "
                "monitor the policy on an env with the spaces it was trained on"
            )


def _check_views(policy: Any, reference: Any, views: tuple[str, ...] | None, deterministic: bool) -> None:
    """Refuse an unknown view before any episode (one step of the 1-env reference env shows them)."""
    if not views:
        return
    obs, _ = reference.reset(seed=0)
    _, have = step_views(policy, obs, np.ones(len(obs), bool), deterministic)
    available = sorted({*have, "all"} if "layer1" in have else have)
    for name in views:
        check_view(name, available)


def check_config(cfg: MonitorConfig) -> None:
    """Refuse options no monitor can use, before any episode.

    Raises:
        UserError: The option and what it takes.
    """
    if not 0.0 < cfg.fit_fraction < 1.0:
        raise UserError(f"--fit-fraction must be between 0 and 1, got {cfg.fit_fraction}")
    if cfg.updates < 1 or cfg.window < 1:
        raise UserError(f"--updates and --window must be at least 1, got {cfg.updates} and {cfg.window}")
    if cfg.skip < 0:
        raise UserError(f"--skip must be 0 or more, got {cfg.skip}")
    if cfg.statistic not in STATISTICS:
        raise UserError(f"--statistic must be one of {', '.join(STATISTICS)}, got {cfg.statistic}")


def calibrate(
    run_dir: Path,
    cfg: MonitorConfig,
    episodes: int,
    checkpoint: str | int = "latest",
    env_id: str | None = None,
    env_kwargs: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Calibrate the monitor of a run and write ``<run>/monitor/`` (see the module docstring)."""
    need = min_calibration_episodes(cfg.alpha)
    check_config(cfg)
    views = () if cfg.features == DEFAULT_VIEW else (cfg.features,)
    out = roll_out(
        run_dir, checkpoint, env_id, env_kwargs, episodes, CALIBRATION_SEED_OFFSET, cfg.deterministic, views
    )
    kept = [e for e in out.episodes if e.success is not False]
    n_fit = max(1, round(len(kept) * cfg.fit_fraction))
    if len(kept) - n_fit < need:
        raise UserError(
            f"calibration kept {len(kept)} successful episodes of {episodes}; alpha {cfg.alpha} needs "
            f"{need} to set thresholds after {cfg.fit_fraction:.0%} fit the scorers (about "
            f"{int(need / (1 - cfg.fit_fraction)) + 1}); run more --episodes or give a larger --alpha"
        )
    mon = monitor_for(cfg, kept[0])
    curves = mon.fit(kept[:n_fit])
    stats = mon.calibrate(kept[n_fit:])
    record = {
        "run": str(out.run.path),
        "checkpoint_step": out.step,
        "checkpoint_sha256": out.checkpoint_sha,
        "env_id": out.env_id,
        "env_kwargs": out.env_kwargs,
        "episodes": episodes,
        "successful": len(kept),
        "fit_episodes": n_fit,
        "calibration_episodes": len(kept) - n_fit,
        "success_rate": None if kept[0].success is None else len(kept) / len(out.episodes),
        "scores": stats,
        "fit_loss_curves": curves,
    }
    _write(
        out.run.path,
        {**mon.state_dict(), "checkpoint_step": out.step, "checkpoint_sha256": out.checkpoint_sha},
        record,
        cfg,
    )
    return record


def monitor_for(cfg: MonitorConfig, episode: Episode) -> Monitor:
    """An unfitted monitor sized for the policy whose steps ``episode`` holds."""
    return Monitor(
        cfg, episode.view(cfg.features).shape[1], episode.obs.shape[1], episode.mode.shape[1],
        episode.uncertainty is not None, ensemble_dim=episode.features.shape[1],
    )  # fmt: skip


def _write(run_path: Path, state: dict[str, Any], record: dict[str, Any], cfg: MonitorConfig) -> None:
    """Write the monitor folder whole, then rename it into place (the old one is removed last)."""
    from rlkd.core.config import save_yaml

    tmp = Path(tempfile.mkdtemp(prefix=".monitor-", dir=run_path))
    try:
        torch.save(state, tmp / "monitor.pt")
        (tmp / "calibration.json").write_text(json.dumps(record, indent=1, default=repr) + "\n")
        save_yaml(cfg, tmp / "config.yaml")
        final, old = run_path / MONITOR_DIR, run_path / ".monitor-old"
        shutil.rmtree(old, ignore_errors=True)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def load_monitor(run: Any) -> tuple[Monitor, int]:
    """The calibrated monitor of ``run`` and the checkpoint step it was calibrated on.

    ``monitor.pt`` is loaded as data only (``weights_only=True``): a file that asks for Python
    objects is refused before anything in it runs.

    Raises:
        UserError: No monitor folder, a damaged or foreign monitor file, or one calibrated for another
            run or checkpoint.
    """
    from rlkd.core.run import load_data_file

    path = run.path / MONITOR_DIR / "monitor.pt"
    again = f"run `rlkd monitor calibrate {run.path}` again"
    if not path.exists():
        raise UserError(
            f"run {run.path} has no calibrated monitor; run `rlkd monitor calibrate {run.path}` first"
        )
    state = load_data_file(path, "monitor file", again)
    try:
        if not isinstance(state, dict):
            raise TypeError(f"a {type(state).__name__}, not a dict")
        step, sha = int(state["checkpoint_step"]), str(state["checkpoint_sha256"])
        mon = Monitor.from_state(state)
    except (KeyError, TypeError, ValueError, RuntimeError, AttributeError) as exc:
        # A file that unpickled as data but is not what calibrate writes (edited, or another tool's).
        detail = (str(exc).strip().splitlines() or [""])[0][:120]  # one line, however long the reason
        raise UserError(
            f"{path} is not a monitor file rlkd can read ({type(exc).__name__}: {detail}); {again}"
        ) from None
    if step not in run.checkpoint_steps() or checkpoint_sha(run, step) != sha:
        raise UserError(
            f"{path.parent} was calibrated for another policy (checkpoint step {step} of another run, "
            f"or one this run no longer has); {again}"
        )
    return mon, step
