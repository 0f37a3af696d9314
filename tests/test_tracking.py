"""What a run folder records about where it came from: provenance in config.yaml, HParams in TensorBoard."""

from __future__ import annotations

import sys
from importlib.metadata import version

from tensorboard.backend.event_processing import plugin_event_accumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from rlkd.cli import main
from rlkd.core.config import read_yaml


def test_config_records_version_commit_and_command_and_still_loads(tmp_path):
    run_dir = tmp_path / "run"
    assert main(["train", "--preset", "debug", "--run-dir", str(run_dir), "--seed", "4"]) == 0
    head = (run_dir / "config.yaml").read_text().splitlines()[:2]
    assert head[0].startswith(f"# rlkd {version('rlkd')}") and "written 20" in head[0]
    assert head[1].startswith("# command: ")
    assert read_yaml(run_dir / "config.yaml")["seed"] == 4  # comments are invisible to readers
    assert main(["resume", str(run_dir), "--total-steps", "768"]) == 0
    assert (run_dir / "config.yaml").read_text().startswith("# rlkd ")  # rewritten with its provenance


def test_hyperparameters_in_tensorboard_hparams_view(tmp_path):
    run_dir = tmp_path / "run"
    assert main(["train", "--preset", "debug", "--run-dir", str(run_dir), "--learning-rate", "0.0007"]) == 0
    acc = plugin_event_accumulator.EventAccumulator(str(run_dir))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")
    start = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/session_start_info"])
    hparams = start.session_start_info.hparams
    assert hparams["learning_rate"].number_value == 0.0007 and hparams["env_id"].string_value == "CartPole-v1"
    experiment = plugin_data_pb2.HParamsPluginData.FromString(content["_hparams_/experiment"]).experiment
    assert "charts/episodic_return" in [m.name.tag for m in experiment.metric_infos]
    assert len(list(run_dir.glob("**/events.out.tfevents.*"))) == 1  # no sub-run folder per call


def test_track_mirrors_every_logged_scalar_to_wandb_offline(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)  # offline by default, no network needed
    run_dir = tmp_path / "run"
    assert main(["train", "--preset", "debug", "--track", "--run-dir", str(run_dir)]) == 0
    (log,) = run_dir.glob("wandb/offline-run-*/run-*.wandb")
    data = log.read_bytes()
    assert b"charts/episodic_return" in data and b"losses/value_loss" in data  # the loop's scalars
    assert b"learning_rate" in data  # the config
    assert not list((run_dir / "wandb").rglob("events.out.tfevents.*"))  # report reads each run once


def test_track_without_wandb_is_one_error_line(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # as if not installed
    assert main(["train", "--preset", "debug", "--track", "--run-dir", str(tmp_path / "r")]) == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("error: --track needs Weights & Biases")
