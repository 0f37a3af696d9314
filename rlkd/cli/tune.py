"""``rlkd tune``: hyperparameter search on Optuna, with pruning on the intermediate returns.

    rlkd tune --preset cartpole --trials 20                       # one machine, in-memory study
    rlkd tune --preset cartpole --trials 20 --storage sqlite:///tune.db --study cartpole
    # other machines join the same study: the same command with a shared database URL
    rlkd tune --preset cartpole --trials 20 --storage postgresql://user@host/db --study cartpole

Each trial is a normal run folder (``<runs_root>/tune-<study>/trial-<n>``) trained with the
options given plus the trial's suggestions from the agent's search space (:data:`SPACES`). Its
objective is the mean of the last ``--average`` logged values of ``--metric`` (default
``charts/episodic_return``); every logged value is reported to Optuna, whose median pruner stops
trials that fall behind. The best trial's full config is written as YAML that ``rlkd train
--config`` takes.
"""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from rlkd.errors import UserError

Suggest = Callable[[Any], dict[str, Any]]


def _ppo_space(trial: Any) -> dict[str, Any]:
    """PPO's search space (rl-zoo3's ranges, trimmed to what matters most)."""
    return {
        "learning_rate": trial.suggest_float("learning_rate", 1e-5, 3e-3, log=True),
        "ent_coef": trial.suggest_float("ent_coef", 1e-8, 0.1, log=True),
        "gamma": trial.suggest_categorical("gamma", [0.9, 0.95, 0.98, 0.99, 0.995, 0.999]),
        "gae_lambda": trial.suggest_categorical("gae_lambda", [0.8, 0.9, 0.95, 0.98, 1.0]),
        "clip_coef": trial.suggest_categorical("clip_coef", [0.1, 0.2, 0.3]),
        "update_epochs": trial.suggest_categorical("update_epochs", [1, 5, 10, 20]),
    }


def _dreamer_space(trial: Any) -> dict[str, Any]:
    """Dreamer's: the three learning rates, the discount and the imagination horizon."""
    return {
        "model_lr": trial.suggest_float("model_lr", 1e-4, 3e-3, log=True),
        "actor_lr": trial.suggest_float("actor_lr", 3e-5, 1e-3, log=True),
        "critic_lr": trial.suggest_float("critic_lr", 3e-5, 1e-3, log=True),
        "discount": trial.suggest_categorical("discount", [0.95, 0.98, 0.99, 0.995]),
        "imag_horizon": trial.suggest_categorical("imag_horizon", [10, 15, 20]),
    }


SPACES: dict[str, Suggest] = {"ppo": _ppo_space, "dreamer": _dreamer_space, "diswm": _dreamer_space}
"""Search space of each agent: a trial -> config fields."""


def tune(
    argv: Sequence[str], trials: int, storage: str | None, study_name: str, metric: str, average: int,
    out: Path | None, pruner: Any = None,
) -> tuple[Any, Path]:  # fmt: skip
    """Run ``trials`` trials of the study; returns (the Optuna study, the best config's YAML path).

    ``pruner``: an Optuna pruner; default a median pruner that waits a quarter of the budget.
    """
    import optuna

    from rlkd.api import run_training
    from rlkd.cli.train_options import resolve_train
    from rlkd.core.config import apply_overrides, save_yaml

    module, base = resolve_train(argv)
    if base.agent not in SPACES:
        raise UserError(f"rlkd tune has search spaces for {', '.join(SPACES)}; not for {base.agent!r}")
    if base.nproc > 1:
        raise UserError(
            "rlkd tune reports each trial's curve from its own process; drop --nproc and scale out by "
            "starting more tune workers on the same --storage"
        )
    if trials < 1 or average < 1:
        raise UserError(f"--trials and --average must be positive, got {trials} and {average}")
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    pruner = pruner or optuna.pruners.MedianPruner(n_warmup_steps=base.total_steps // 4)
    study = optuna.create_study(
        study_name=study_name, storage=storage, load_if_exists=True, direction="maximize", pruner=pruner
    )
    # Trial numbers are unique within a stored study; an in-memory one restarts at 0 each time.
    stamp = "" if storage else f"-{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    folder = Path(base.runs_root) / f"tune-{study_name}{stamp}"

    def objective(trial: optuna.Trial) -> float:
        suggested = {**SPACES[base.agent](trial), "run_dir": str(folder / f"trial-{trial.number}")}
        cfg = apply_overrides(base, suggested, f"trial {trial.number}")
        cfg.validate()
        values: list[float] = []

        def on_log(step: int, scalars: dict[str, float]) -> None:
            if metric in scalars and math.isfinite(float(scalars[metric])):
                values.append(float(scalars[metric]))
                trial.report(values[-1], step)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at step {step}")

        run_training(module, cfg, listeners=[on_log])
        if not values:
            raise UserError(f"trial {trial.number} logged no {metric}; choose --metric or train longer")
        return float(sum(values[-average:]) / len(values[-average:]))

    # A trial that fails (diverges, logs no metric) is marked failed; the search goes on.
    study.optimize(objective, n_trials=trials, catch=(UserError,))
    states = [t.state for t in study.trials]
    if optuna.trial.TrialState.COMPLETE not in states:
        state = optuna.trial.TrialState
        pruned, failed = states.count(state.PRUNED), states.count(state.FAIL)
        raise UserError(f"no trial of study {study_name!r} has completed ({pruned} pruned, {failed} failed "
                        f"of {len(states)}); see the trials' run folders")  # fmt: skip
    best = study.best_trial
    cfg = apply_overrides(base, {**best.params, "run_dir": ""}, "best trial")
    path = out or folder / "best.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_yaml(cfg, path, f"rlkd tune study {study_name!r}: best of {len(study.trials)} trials, "
                         f"trial {best.number}, {metric} = {best.value:.4g}")  # fmt: skip
    return study, path
