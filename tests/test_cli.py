"""Bad input gets one clear `error:` line and exit status 2, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from rlkd.agents.ppo import PPOConfig

from rlkd.cli import main
from rlkd.core.config import field_docs


def error_line(capsys, argv: list[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("error: "), err
    assert "Traceback" not in "\n".join(err)
    return err[-1]


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["train", "--env", "CartPol-v1", "--preset", "debug"], "did you mean CartPole-v1"),
        (["train", "--preset", "debgu"], "unknown preset 'debgu'.*did you mean debug"),
        (["train", "--num-envs", "0"], "--num-envs must be positive"),
        (["train", "--total-steps", "-5"], "--total-steps must be positive"),
        (["train", "--learning-rate", "fast"], "--learning-rate expects float"),
        (["train", "--intrinsic", "icm"], "--intrinsic must be one of none, rnd, rdd"),
        (["train", "--no-such-option", "1"], "unrecognized arguments"),
        (["train", "--agent", "sac"], "unknown agent 'sac'"),
        (["train", "--env-backend", "ray"], "--env-backend must be auto, envpool or gymnasium"),
        (["resume", "/nonexistent/run"], "is not a run folder"),
        (["frobnicate"], "invalid choice"),
        (["train", "--learning-rate", "nan"], "--learning-rate must be a finite number"),
        (["train", "--torch-threads", "-3"], "--torch-threads must be 0"),
        (["train", "--on-nonfinite", "ignore"], "--on-nonfinite must be stop or skip"),
        *([] if torch.cuda.is_available() else [(["train", "--device", "cuda"], "sees no CUDA device")]),
    ],
)
def test_bad_input_one_line_errors(capsys, tmp_path, argv, expected):
    import re

    if argv[0] == "train":
        argv = [*argv, "--runs-root", str(tmp_path)]
    assert re.search(expected, error_line(capsys, argv))
    # A start that failed leaves no run folder behind.
    assert not any(tmp_path.iterdir())


def test_bad_yaml_and_unknown_yaml_field(capsys, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("num_envs: [1,\n")
    assert "not valid YAML" in error_line(capsys, ["train", "--config", str(bad)])
    typo = tmp_path / "typo.yaml"
    typo.write_text("num_env: 4\n")
    assert "did you mean num_envs" in error_line(capsys, ["train", "--config", str(typo)])


def test_config_precedence_preset_yaml_cli(tmp_path):
    from rlkd.cli.train_options import resolve_train

    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("num_envs: 6\nnum_steps: 16\n")
    _, cfg = resolve_train(["--preset", "debug", "--config", str(cfg_file), "--num-steps", "8"])
    assert cfg.env_id == "CartPole-v1"  # from the preset
    assert cfg.num_envs == 6  # YAML beats preset
    assert cfg.num_steps == 8  # command line beats YAML
    assert cfg.preset == "debug"


def test_yaml_bare_on_off_reach_string_options(tmp_path):
    from rlkd.cli.train_options import resolve_train

    cfg_file = tmp_path / "c.yaml"
    cfg_file.write_text("agent: dreamer\npred_continue: off\n")  # YAML 1.1 reads `off` as False
    _, cfg = resolve_train(["--config", str(cfg_file)])
    assert cfg.pred_continue == "off" and not cfg.uses_continue
    cfg_file.write_text("agent: dreamer\npred_continue: on\n")
    assert resolve_train(["--config", str(cfg_file)])[1].uses_continue


def test_every_config_field_has_a_docstring_for_help():
    import dataclasses

    docs = field_docs(PPOConfig)
    missing = [f.name for f in dataclasses.fields(PPOConfig) if not docs.get(f.name)]
    assert missing == []


def test_corrupt_truncated_and_foreign_checkpoints(capsys, tmp_path):
    run_dir = tmp_path / "run"
    assert main(["train", "--preset", "debug", "--run-dir", str(run_dir)]) == 0
    ckpt = sorted((run_dir / "checkpoints").glob("step_*.pt"))[-1]
    good = ckpt.read_bytes()

    ckpt.write_bytes(good[: len(good) // 2])
    assert "corrupt, truncated" in error_line(capsys, ["resume", str(run_dir), "--total-steps", "2048"])

    torch.save({"weights": torch.zeros(3)}, ckpt)
    assert "not an rlkd checkpoint" in error_line(capsys, ["resume", str(run_dir), "--total-steps", "2048"])

    import argparse

    torch.save({"format": "rlkd-checkpoint-v1", "payload": argparse.Namespace(code=True)}, ckpt)
    err = error_line(capsys, ["resume", str(run_dir), "--total-steps", "2048"])
    assert "refused" in err and "weights_only" in err and "is corrupt" not in err

    data = torch.load(_write(ckpt, good), weights_only=True)
    data["env_id"] = "Pendulum-v1"
    torch.save(data, ckpt)
    assert "copied from another run" in error_line(capsys, ["resume", str(run_dir), "--total-steps", "2048"])

    _write(ckpt, good)
    assert "already reached step 512" in error_line(capsys, ["resume", str(run_dir)])


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_console_script_help_lists_field_docs():
    out = subprocess.run(
        [sys.executable, "-m", "rlkd.cli", "train", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "--num-envs" in out and "Number of parallel environments." in out
    assert "--intrinsic" in out and "--jobs N" in out


def test_several_seeds_make_one_run_folder_each(tmp_path, capsys):
    from rlkd.core.config import read_yaml

    argv = ["train", "--preset", "debug", "--seed", "1-2,5", "--jobs", "2", "--runs-root", str(tmp_path)]
    assert main(argv) == 0
    seeds = sorted(read_yaml(run / "config.yaml")["seed"] for run in tmp_path.iterdir())
    assert seeds == [1, 2, 5]
    err = capsys.readouterr().err
    assert all(f"seed {s}: done: " in err for s in (1, 2, 5))
    err = error_line(capsys, ["train", "--seed", "1,2", "--run-dir", str(tmp_path / "x")])
    assert "drop run_dir" in err
    config = tmp_path / "c.yaml"
    config.write_text(f"run_dir: {tmp_path / 'y'}\n")  # a run_dir from a config file is caught too
    assert "drop run_dir" in error_line(capsys, ["train", "--seed", "1,2", "--config", str(config)])
    assert "got '3-1'" in error_line(capsys, ["train", "--seed", "3-1"])
    assert "names a seed twice" in error_line(capsys, ["train", "--seed", "1,1"])
    assert "--jobs runs several seeds" in error_line(capsys, ["train", "--jobs", "2"])
    # Bad options fail once, before any seed starts.
    assert "--learning-rate must be positive" in error_line(
        capsys, ["train", "--seed", "1,2", "--learning-rate", "-1", "--runs-root", str(tmp_path / "none")]
    )
    assert not (tmp_path / "none").exists()


@pytest.mark.parametrize("agent", ["ppo", "dreamer", "diswm", "pretrain"])
def test_every_preset_resolves_to_a_valid_config(agent, tmp_path):
    from rlkd.agents import agent_module

    from rlkd.core.config import resolve

    module = agent_module(agent)
    needs = {"diswm": {"pretrained": str(tmp_path)}, "pretrain": {"data": str(tmp_path)}}
    extra = needs.get(agent, {})
    for preset in module.PRESETS:
        cfg = resolve(module.CONFIG, module.PRESETS, preset, None, {"agent": agent, **extra})
        assert cfg.preset == preset


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_eval_on_cuda_without_cuda_is_one_error_line(capsys, tmp_path):
    err = error_line(capsys, ["eval", str(tmp_path), "--device", "cuda"])
    assert "no CUDA device" in err and "--device cpu" in err
