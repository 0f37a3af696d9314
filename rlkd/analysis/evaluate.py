"""``rlkd eval``: run a trained checkpoint for N complete episodes and report how it does.

What :func:`evaluate` does, stated once so that the CLI help, the JSON and TensorBoard agree:

* **Env.** The run's env is rebuilt with :func:`rlkd.envs.make_vec` from its ``config.yaml``
  (``env_id``, ``env_backend``, ``env_kwargs``) with ``min(episodes, 8)`` parallel envs (one when
  a video is recorded) and the seed ``config seed + EVAL_SEED_OFFSET`` (10 000), so evaluation
  episodes are not the training episodes' start states. Python, numpy and torch are seeded with
  it too (stochastic policies sample with torch), so the same run, checkpoint and options give the
  same numbers every time.
* **Episode count, without bias.** Env ``i`` of ``n`` is given a fixed quota of
  ``episodes // n (+1 for the first episodes % n envs)`` episodes and only its first ``quota``
  episodes count. Counting "the first N episodes to finish over all envs" instead would favour
  short episodes (they finish first), which biases returns; a fixed quota per env does not, and
  still counts exactly ``episodes`` complete episodes.
* **Metrics.** ``mean_return``/``std_return`` (population std, ``ddof=0``, as SB3's
  ``evaluate_policy``) of the episodic returns the env's episode statistics report (for envpool
  Atari: the unclipped game score), ``mean_length``, and ``success_rate`` when the env reports
  ``is_success`` (our AGV envs do; Gymnasium envs may, in ``final_info``); an episode whose last
  step reports no success flag counts as a failure.
* **Where it is written.** ``<run>/eval/eval_step_<N>.json`` (metrics, options and the
  per-episode returns/lengths/successes) and TensorBoard scalars ``eval/mean_return``,
  ``eval/std_return``, ``eval/mean_length`` and ``eval/success_rate`` at the checkpoint's step.
  The scalars go to their own log dir ``<run>/eval/`` so that the training event files are never
  touched (a second writer in the run folder with a purge step would hide training points; in
  TensorBoard the evaluation shows up as the run ``<run>/eval``).
* **Env hooks.** An env whose unwrapped vector env has ``eval_tracker()`` adds its own files: the
  AGV envs draw the counted episodes' trajectories over the warehouse map,
  ``<run>/eval/trajectories_step_<N>.png`` (:mod:`rlkd.envs.agv.trajectories`).
* **Video.** ``video=FILE.gif`` records the first episode. With same-step autoreset the env has
  already started the next episode when the last step returns, so the GIF holds one frame per
  step: frame ``t`` is the state the policy acted on at step ``t`` (``episode length`` frames).
  envpool cannot render on CPU: an envpool Atari run plays in Gymnasium's ALE env preprocessed as
  envpool does (:mod:`rlkd.envs.atari`), another envpool run in the Gymnasium env of the same id
  when Gymnasium knows it.
* **``--checkpoint best``.** Among the checkpoints still on disk, the one whose training curve was
  best when it was saved: for each checkpoint step, the most recent logged value at or before
  that step of ``charts/success_rate`` (if the run logged it) and ``charts/episodic_return``;
  checkpoints are ranked by success rate, then return, then the later step wins ties.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from rlkd.core.episodes import eval_env, run_episodes
from rlkd.core.paths import check_output_file, make_dir
from rlkd.errors import UserError

EVAL_SEED_OFFSET = 10_000
"""Evaluation seed = the run's training seed + this offset (different start states from training)."""
MAX_EVAL_ENVS = 8
"""At most this many parallel envs (each env only runs its own share of the episodes)."""
SUCCESS_TAG = "charts/success_rate"
RETURN_TAG = "charts/episodic_return"
EVAL_TAGS = ("mean_return", "std_return", "success_rate", "mean_length")


# ===================================================================== checkpoint choice
def parse_checkpoint_spec(spec: str | int) -> str | int:
    """Turn ``--checkpoint`` into ``"latest"``, ``"best"`` or a step number.

    Raises:
        UserError: Anything else.
    """
    if isinstance(spec, int):
        return spec
    text = str(spec).strip().lower()
    if text in ("latest", "best"):
        return text
    try:
        step = int(text)
    except ValueError:
        raise UserError(f"--checkpoint must be latest, best or a step number, got {spec!r}") from None
    if step < 0:
        raise UserError(f"--checkpoint step must not be negative, got {step}")
    return step


def _value_at(steps: np.ndarray, values: np.ndarray, step: int) -> float | None:
    """The most recent value logged at or before ``step`` (None if nothing was logged yet)."""
    i = int(np.searchsorted(steps, step, side="right")) - 1
    return float(values[i]) if i >= 0 else None


def best_checkpoint_step(run_path: Path, steps: list[int]) -> int:
    """Step of the checkpoint whose training curve was best when it was saved.

    Each checkpoint step is scored with the most recent logged value at or before it of
    ``charts/success_rate`` (when the run logged that tag) and ``charts/episodic_return``;
    the ranking is success rate, then return, then the later step (more training) on ties.
    Checkpoints before the first logged point of a tag score lowest on it.

    Args:
        run_path: The run folder (its TensorBoard event files are read).
        steps: Steps of the checkpoints on disk.

    Returns:
        The chosen checkpoint step.

    Raises:
        UserError: No checkpoints, or the run logged neither tag.
    """
    from rlkd.analysis import load_run

    if not steps:
        raise UserError(f"run {run_path} has no checkpoints yet (nothing under {run_path / 'checkpoints'})")
    scalars = load_run(run_path).scalars
    tags = [t for t in (SUCCESS_TAG, RETURN_TAG) if t in scalars]
    if RETURN_TAG not in tags:
        raise UserError(
            f"--checkpoint best needs the training curve {RETURN_TAG} but run {run_path} did not log it; "
            "give --checkpoint latest or a step number"
        )

    def score(step: int) -> tuple[float, ...]:
        out = []
        for tag in tags:
            v = _value_at(scalars[tag].steps, scalars[tag].values, step)
            out.append(-math.inf if v is None or not math.isfinite(v) else v)
        return (*out, float(step))

    return max(steps, key=score)


# ===================================================================== env helpers
def env_kwargs_of(config: dict[str, Any], agent: Any) -> dict[str, Any]:
    """The env kwargs the run trained with: ``env_kwargs``, plus what the agent adds itself
    (``AgentModule.env_kwargs_for``; Dreamer adds ``action_repeat`` for DMC ids). The hook only
    reads config fields, so it is given the run's config as attributes."""
    return dict(agent.env_kwargs_for(SimpleNamespace(**config)))


# ===================================================================== evaluation
def evaluate(
    run_dir: Path,
    checkpoint: str | int = "latest",
    episodes: int = 10,
    deterministic: bool = False,
    video: Path | None = None,
    device: str = "cpu",
) -> dict[str, float | int | str]:
    """Evaluate a run's checkpoint for ``episodes`` complete episodes (see the module docstring).

    Args:
        run_dir: A run folder made by ``rlkd train``.
        checkpoint: ``"latest"``, ``"best"`` or a checkpoint step (as int or string).
        episodes: Number of complete episodes to run and count (>= 1).
        deterministic: Take the policy's most likely action instead of sampling.
        video: Write a GIF of the first episode to this path (``.gif``).
        device: Torch device for the policy.

    Returns:
        Flat ``{name: value}`` of the metrics and the files written, in display order.

    Raises:
        UserError: Not a run folder, no or mismatching checkpoints, a bad option, or an env that
            cannot render when a video is asked for.
    """
    from rlkd.core.run import seed_everything

    if episodes < 1:
        raise UserError(f"--episodes must be at least 1, got {episodes}")
    if video is not None and Path(video).suffix.lower() != ".gif":
        raise UserError(f"--video writes GIF files only; give a path ending in .gif, got {video}")
    if video is not None:  # before any episode runs, so a bad path never costs their results
        check_output_file(Path(video), "--video")
    run, data, agent, policy = load_run_policy(run_dir, checkpoint, device)
    step, config = int(data["step"]), run.config
    out_dir = make_dir(run.path / "eval", "the run's eval folder")  # checked before any episode runs

    num_envs = 1 if video is not None else min(episodes, MAX_EVAL_ENVS)
    seed = int(config.get("seed", 0)) + EVAL_SEED_OFFSET
    seed_everything(seed)  # the policy samples actions with torch's global generator
    envs = eval_env(config, env_kwargs_of(config, agent), num_envs, seed, render=video is not None)
    env_id = str(config["env_id"])
    try:
        stats = run_episodes(envs, policy, episodes, seed, deterministic, video is not None, env_id)
    finally:
        envs.close()
    metrics = _metrics(stats)
    result: dict[str, float | int | str] = {
        "run": str(run.path), "env_id": env_id, "checkpoint_step": step, "episodes": len(stats["returns"]),
        "deterministic": str(bool(deterministic)).lower(), "seed": seed,
        **{k: metrics[k] for k in EVAL_TAGS if k in metrics},
    }  # fmt: skip
    if video is not None:
        from rlkd.core.media import write_gif

        fps = float(envs.metadata.get("render_fps") or 30)
        result["video"] = str(write_gif(stats["frames"], video, fps=fps))
    if stats["records"]:  # the env's own evaluation files (AGV: a trajectory plot)
        result |= stats["tracker"].report(stats["records"], stats["successes"], out_dir, step)
    json_path = out_dir / f"eval_step_{step}.json"
    per_episode = {k: stats[k] for k in ("returns", "lengths", "successes")}
    # "checkpoint" as asked: latest, best or a step.
    record = {**result, "checkpoint": str(checkpoint), "deterministic": bool(deterministic)}
    record["per_episode"] = per_episode
    json_path.write_text(json.dumps(record, indent=2) + "\n")
    result["json"] = str(json_path)
    _log_tensorboard(out_dir, step, metrics)
    return result


def load_run_policy(
    run_dir: Path, checkpoint: str | int, device: str
) -> tuple[Any, dict[str, Any], Any, Any]:
    """(run, checkpoint payload, agent module, policy) for ``checkpoint`` (latest, best or a step)."""
    from rlkd.agents import agent_module
    from rlkd.core.run import Run

    spec = parse_checkpoint_spec(checkpoint)
    run = Run.open(run_dir)
    if spec == "best":
        spec = best_checkpoint_step(run.path, run.checkpoint_steps())
    data = run.load_checkpoint(spec)
    agent = agent_module(str(run.config.get("agent", "ppo")))
    return run, data, agent, agent.load_policy(run, data, device)


def _metrics(stats: dict[str, Any]) -> dict[str, float]:
    """Mean/std (ddof 0) return, mean length and, if any episode reported one, the success rate."""
    returns = np.asarray(stats["returns"], dtype=np.float64)
    metrics = {
        "mean_return": float(returns.mean()),
        "std_return": float(returns.std()),
        "mean_length": float(np.mean(stats["lengths"])),
    }
    if any(s is not None for s in stats["successes"]):
        metrics["success_rate"] = float(np.mean([bool(s) for s in stats["successes"]]))
    return metrics


def _log_tensorboard(log_dir: Path, step: int, metrics: dict[str, float]) -> None:
    """Write ``eval/<name>`` scalars at ``step`` in their own log dir (training files untouched)."""
    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(log_dir))
    try:
        for name, value in metrics.items():
            writer.add_scalar(f"eval/{name}", value, step)
    finally:
        writer.flush()
        writer.close()
