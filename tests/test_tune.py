"""rlkd tune: an Optuna study shared through its storage, pruning, and a best config train takes."""

from __future__ import annotations

import optuna
import pytest

from rlkd.cli import main
from rlkd.cli.tune import tune
from rlkd.core.config import read_yaml
from rlkd.errors import UserError
from tests.helpers import read_scalars


def test_two_workers_share_a_study_and_the_best_config_trains(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = ["tune", "--preset", "debug", "--trials", "2", "--storage", f"sqlite:///{tmp_path}/s.db",
            "--study", "s", "--average", "2"]  # fmt: skip
    assert main(argv) == 0
    assert main(argv) == 0  # a second worker (here one after the other) joins the same study
    study = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/s.db")
    assert len(study.trials) == 4
    folders = sorted(p.name for p in (tmp_path / "runs" / "tune-s").glob("trial-*"))
    assert folders == [f"trial-{i}" for i in range(4)]
    best = read_yaml(tmp_path / "runs" / "tune-s" / "best.yaml")
    assert {k: best[k] for k in study.best_trial.params} == study.best_trial.params
    assert main(["train", "--config", "runs/tune-s/best.yaml", "--run-dir", "again"]) == 0
    again = read_yaml(tmp_path / "again" / "config.yaml")
    assert again["learning_rate"] == study.best_params["learning_rate"]
    out = capsys.readouterr().out
    assert f"best: trial {study.best_trial.number}" in out


def test_trials_that_fall_behind_are_pruned_early(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    everything = optuna.pruners.ThresholdPruner(lower=1e9, n_warmup_steps=0)  # no trial is good enough
    storage = f"sqlite:///{tmp_path}/p.db"
    with pytest.raises(UserError, match=r"no trial of study 'p' has completed \(1 pruned, 0 failed of 1\)"):
        tune(["--preset", "debug", "--total-steps", "2048"], 1, storage, "p", "charts/episodic_return", 1,
             None, pruner=everything)  # fmt: skip
    (trial,) = optuna.load_study(study_name="p", storage=storage).trials
    assert trial.state == optuna.trial.TrialState.PRUNED
    steps = [s for s, _ in read_scalars(tmp_path / "runs" / "tune-p" / "trial-0")["charts/episodic_return"]]
    assert steps[-1] < 2048  # stopped at its first report, not at the end of its budget


def test_in_memory_studies_run_again_and_failed_trials_do_not_stop_the_search(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = (1, None, "m", "charts/episodic_return", 1, None)
    for _ in range(2):  # trial numbers restart at 0 without a storage: each study gets its own folder
        tune(["--preset", "debug", "--total-steps", "512"], *args)
    assert len(list((tmp_path / "runs").glob("tune-m-*/trial-0"))) == 2
    # Every trial fails (no run logs this metric): each is marked failed, then one error line.
    with pytest.raises(UserError, match=r"\(0 pruned, 2 failed of 2\)"):
        tune(["--preset", "debug", "--total-steps", "512"], 2, None, "f", "charts/no_such_tag", 1, None)
