"""What a run folder records about where it came from: provenance in config.yaml, HParams in TensorBoard."""

from __future__ import annotations

from importlib.metadata import version

from tensorboard.backend.event_processing import plugin_event_accumulator
from tensorboard.plugins.hparams import plugin_data_pb2

from rlkd.cli import main
from rlkd.config import read_yaml


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
