"""DisWM end to end on the AGV pixel env: datasets, pretraining, distillation invariants, CLI, logging."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
from rlkd.agents import dreamer
from rlkd.envs.agv.colors import COLOR_SETS, FLOOR, OBSTACLE, RACK, rgb_to_hue
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rlkd.cli import main
from rlkd.core.run import Run
from rlkd.errors import UserError
from rlkd.world_model import transfer
from rlkd.world_model.codecs import preprocess
from rlkd.world_model.datasets import SequenceDataset, collect, write_episode

ENV_ID = "rlkd/AGVWarehouse-SimpleStatic-Pixels-v0"
BACKEND = ["--env-backend", "gymnasium", "--torch-threads", "1"]  # gymnasium: skip importing envpool


def dreamer_cfg(run_dir: Path, **kw: object) -> dreamer.DreamerConfig:
    cfg = dreamer.DreamerConfig(env_id=ENV_ID, run_dir=str(run_dir), env_backend="gymnasium",
                                **dreamer.PRESETS["debug"])  # fmt: skip
    cfg = dataclasses.replace(cfg, **kw)
    cfg.validate()
    return cfg


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("data") / "videos"
    assert main(["collect", "--env", ENV_ID, "--episodes", "6", "--out", str(out), "--seed", "0"]) == 0
    return out


@pytest.fixture(scope="module")
def teacher_run(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    run_dir = tmp_path_factory.mktemp("pt") / "run"
    argv = ["pretrain", "--data", str(dataset), "--preset", "debug", "--run-dir", str(run_dir), *BACKEND]
    assert main(argv) == 0
    return run_dir


def scalars(run_dir: Path) -> dict[str, list[float]]:
    acc = EventAccumulator(str(run_dir), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    out = {tag: [e.value for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}
    out.update({tag: [] for tag in acc.Tags()["images"]})
    return out


# ----------------------------------------------------------------------------- datasets


def test_collect_writes_manifest_and_valid_episodes(dataset: Path) -> None:
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert manifest["env_id"] == ENV_ID and manifest["color_set"] == "default"
    assert len(manifest["episodes"]) == 6
    for entry in manifest["episodes"]:
        with np.load(dataset / entry["file"], allow_pickle=False) as ep:
            steps = entry["length"]
            assert ep["image"].dtype == np.uint8 and ep["image"].shape == (steps, 64, 64, 3)
            assert ep["is_first"][0] and not ep["is_first"][1:].any()
            # Random AGV episodes end by collision (terminal) long before the 2000-step limit.
            assert ep["is_terminal"][-1] and not ep["is_terminal"][:-1].any()
            assert entry["return"] == pytest.approx(float(ep["reward"].sum()))
    data = SequenceDataset(dataset, 8, 4, seed=0)
    short = sum(e["length"] < 8 for e in manifest["episodes"])
    assert data.skipped == short and len(data.episodes) == 6 - short > 0  # short ones skipped, not fatal
    batch = data.sample()
    assert batch["image"].shape == (4, 8, 64, 64, 3) and batch["is_first"][:, 0].all()


def floor_hue(frame: np.ndarray) -> float:
    """Hue of the most frequent colour of a (64, 64, 3) frame: the floor in the simple scenes."""
    colours, counts = np.unique(frame.reshape(-1, 3), axis=0, return_counts=True)
    return float(rgb_to_hue(colours[counts.argmax()]))


def in_set(hue: float, name: str) -> bool:
    lo, hi = COLOR_SETS[name]
    return lo - 0.01 <= hue <= hi + 0.01  # uint8 rounding of the rendered colour


def test_collect_records_the_requested_colour_set(tmp_path: Path) -> None:
    out = collect(ENV_ID, 1, tmp_path / "test", seed=3, color_set="test")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["color_set"] == "test"
    with np.load(out / manifest["episodes"][0]["file"], allow_pickle=False) as ep:
        hues = [floor_hue(frame) for frame in ep["image"]]
    assert all(in_set(h, "test") for h in hues), hues


def _bad_dataset(tmp_path: Path, **changes: np.ndarray) -> Path:
    ep = {
        "image": np.zeros((10, 64, 64, 3), np.uint8), "action": np.zeros((10, 2), np.float32),
        "reward": np.zeros(10, np.float32), "is_first": np.zeros(10, bool), "is_terminal": np.zeros(10, bool),
    }  # fmt: skip
    ep.update(changes)
    (tmp_path / "episode_0.npz").unlink(missing_ok=True)
    if "pickle" in changes:
        ep.pop("pickle")
        ep["reward"] = np.array([object()] * 10, dtype=object)
        np.savez(tmp_path / "episode_0.npz", **ep)
    else:
        write_episode(tmp_path / "episode_0.npz", ep)
    (tmp_path / "manifest.json").write_text(json.dumps({"episodes": [{"file": "episode_0.npz"}]}))
    return tmp_path


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"image": np.zeros((10, 64, 64), np.uint8)}, "'image' must be uint8"),
        ({"image": np.zeros((10, 64, 64, 3), np.float32)}, "'image' must be uint8"),
        ({"reward": np.zeros(10, np.float64)}, "'reward' must be float32"),
        ({"action": np.zeros((9, 2), np.float32)}, "'action' must be float32"),
        ({"image": np.zeros((3, 64, 64, 3), np.uint8)}, "fewer steps than the sequence length"),
        ({"pickle": np.zeros(1)}, "pickled object arrays"),
    ],
)
def test_malformed_datasets_are_rejected(tmp_path: Path, change: dict, message: str) -> None:
    if "image" in change and change["image"].shape[0] == 3:
        change = {k: v[:3] for k, v in {"image": change["image"], "action": np.zeros((3, 2), np.float32),
                  "reward": np.zeros(3, np.float32), "is_first": np.zeros(3, bool),
                  "is_terminal": np.zeros(3, bool)}.items()}  # fmt: skip
    with pytest.raises(UserError, match=message) as err:
        SequenceDataset(_bad_dataset(tmp_path, **change), 8, 2)
    assert "episode_0.npz" in str(err.value)


def test_missing_key_is_rejected(tmp_path: Path) -> None:
    np.savez(tmp_path / "episode_0.npz", image=np.zeros((10, 64, 64, 3), np.uint8))
    (tmp_path / "manifest.json").write_text(json.dumps({"episodes": ["episode_0.npz"]}))
    with pytest.raises(UserError, match=r"episode_0.npz lacks key\(s\) action"):
        SequenceDataset(tmp_path, 8, 2)


# ----------------------------------------------------------------------------- eta and switches


def test_eta_schedule_is_the_official_formula() -> None:
    cfg = dataclasses.replace(dreamer.DreamerConfig(), agent="diswm", pretrained="x")
    cross = dataclasses.replace(cfg, distill_delay_steps=50_000)
    # models.py: same-domain 0.1 * max(1 - step / 50000, 0.1); cross-domain 0 before 50k, then
    # 0.1 * max(2 - step / 50000, 0.1).
    table = {0: (0.1, 0.0), 10_000: (0.08, 0.0), 25_000: (0.05, 0.0), 45_000: (0.01, 0.0),
             49_999: (0.01, 0.0), 50_000: (0.01, 0.1), 75_000: (0.01, 0.05), 95_000: (0.01, 0.01),
             200_000: (0.01, 0.01)}  # fmt: skip
    for step, (same, crossed) in table.items():
        assert dreamer.eta_schedule(cfg, step) == pytest.approx(same), step
        assert dreamer.eta_schedule(cross, step) == pytest.approx(crossed), step
        assert dreamer.eta_schedule(cfg, step) == pytest.approx(0.1 * max(1 - step / 50_000, 0.1))
    assert dreamer.eta_schedule(dataclasses.replace(cfg, agent="dreamer", pretrained=""), 0) == 0.0
    off = dataclasses.replace(cfg, eta_init=0.0, eta_final=0.0)  # the no-distillation control
    assert [dreamer.eta_schedule(off, s) for s in (0, 10_000, 200_000)] == [0.0, 0.0, 0.0]


def test_distill_without_pretrained_is_a_user_error() -> None:
    with pytest.raises(UserError, match="--pretrained"):
        dataclasses.replace(dreamer.DreamerConfig(), agent="diswm").validate()


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def diswm_run(teacher_run: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """collect -> pretrain -> train --agent diswm, all through the CLI."""
    run_dir = tmp_path_factory.mktemp("diswm") / "run"
    teacher_before = Run.open(teacher_run).load_checkpoint()["state"]["model"]
    argv = ["train", "--agent", "diswm", "--pretrained", str(teacher_run), "--preset", "debug",
            "--env", ENV_ID, "--run-dir", str(run_dir), "--color-switch", *BACKEND]  # fmt: skip
    assert main(argv) == 0
    return run_dir, teacher_before


def test_pretrain_run_is_named_after_the_dataset_env(teacher_run: Path) -> None:
    run = Run.open(teacher_run)
    assert run.config["agent"] == "pretrain" and run.config["env_id"] == ENV_ID
    tags = scalars(teacher_run)
    assert len(tags["losses/image"]) >= 2 and "world_model/reconstruction" in tags


def test_pretraining_lowers_the_image_loss_on_fixed_data(teacher_run: Path, dataset: Path) -> None:
    # One batch of 16x8 windows scored by the trained teacher and by a freshly initialised model of
    # the same config (the single-update values logged by the debug preset are too noisy to compare).
    from rlkd.agents.pretrain import PretrainConfig

    from rlkd.core.config import from_dict
    from rlkd.world_model.model import WorldModel

    run = Run.open(teacher_run)
    cfg = from_dict(PretrainConfig, run.config, "config.yaml")
    batch = {k: torch.as_tensor(v) for k, v in SequenceDataset(str(dataset), 8, 16, seed=3).sample().items()}
    batch["obs"] = batch.pop("image")
    image_loss = []
    for weights in (None, run.load_checkpoint()["state"]["model"]):
        torch.manual_seed(0)
        model = WorldModel(cfg, action_dim=0, beta_vae=True)
        if weights is not None:
            model.load_state_dict(weights)
        with torch.no_grad():
            image_loss.append(model.loss(batch)[2]["image_nll"].item())
    assert image_loss[1] < 0.9 * image_loss[0], image_loss


def test_diswm_end_to_end_writes_tags(diswm_run: tuple[Path, dict]) -> None:
    run_dir, _ = diswm_run
    config = Run.open(run_dir).config
    assert config["agent"] == "diswm" and config["color_switch"] is True and config["env_id"] == ENV_ID
    tags = scalars(run_dir)
    for tag in ("losses/image", "losses/reward", "losses/kl", "world_model/vae_kl", "world_model/image_nll",
                "losses/distill", "world_model/eta", "losses/actor", "losses/critic",
                "charts/episodic_return", "charts/episodic_length", "charts/SPS", "charts/success_rate",
                "world_model/reconstruction", "world_model/imagined"):  # fmt: skip
        assert tag in tags, tag
    # Sparse AGV reward: an episode returns 1 exactly when it succeeds, so in every log interval
    # the success rate equals the mean episodic return.
    assert tags["charts/success_rate"] == pytest.approx(tags["charts/episodic_return"])
    eta = tags["world_model/eta"]
    assert eta[0] > eta[-1] == pytest.approx(0.01)  # it really anneals (debug: eta_decay_steps=200)
    assert tags["charts/color_switch"] == [1.0]


def test_teacher_round_trips_frozen_and_outside_optimizer(diswm_run: tuple[Path, dict]) -> None:
    run_dir, before = diswm_run
    payload = Run.open(run_dir).load_checkpoint()
    teacher = payload["state"]["teacher"]
    for key, value in teacher.items():
        assert torch.equal(value, before[f"encoder.{key}"]), key  # bit-identical after training
    # The student moved away from its random init and differs from the teacher.
    student = {
        k[len("wm.encoder.") :]: v
        for k, v in payload["state"]["agent"].items()
        if k.startswith("wm.encoder.")
    }
    assert set(student) == set(teacher)
    assert not all(torch.equal(student[k], teacher[k]) for k in teacher)


class StepRecorder(gym.vector.VectorWrapper):
    """Records, after every env step, the sim's colour set, palette hues and the frame's floor hue."""

    def __init__(self, env: gym.vector.VectorEnv) -> None:
        super().__init__(env)
        self.log: list[tuple[str, np.ndarray, float]] = []

    def step(self, actions: np.ndarray):
        out = self.env.step(actions)
        sim = self.env.unwrapped.sim
        hues = rgb_to_hue(sim.palette[0, [FLOOR, RACK, OBSTACLE]])
        self.log.append((sim.color_set, hues, floor_hue(out[0][0])))
        return out


def test_color_switch_happens_at_half_of_training_on_the_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    made: list[StepRecorder] = []
    make_vec = dreamer.rlkd_envs.make_vec

    def recording_make_vec(*args: object, **kwargs: object) -> StepRecorder:
        made.append(StepRecorder(make_vec(*args, **kwargs)))
        return made[-1]

    monkeypatch.setattr(dreamer.rlkd_envs, "make_vec", recording_make_vec)
    total = 60
    cfg = dreamer_cfg(tmp_path / "sw", total_steps=total, prefill=50, image_log_interval=0, color_switch=True)
    dreamer.train(cfg, Run.create(cfg, "dreamer"), None)
    log = made[0].log
    assert len(log) == total
    # Step k (1-based) is the k-th agent step; the switch happens right after step total/2, so the
    # observations of steps 1..total/2 are in "train" colours and every later one in "test" colours.
    for k, (color_set, hues, frame_hue) in enumerate(log, start=1):
        want = "train" if k <= total // 2 else "test"
        assert color_set == want, k
        assert all(in_set(h, want) for h in hues), (k, hues)
        assert in_set(frame_hue, want), (k, frame_hue)
    assert scalars(tmp_path / "sw")["charts/color_switch"] == [1.0]


def test_mismatches_through_the_cli(teacher_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    # A teacher pretrained with z_dim 20 cannot be distilled into a z_dim 7 student.
    argv = ["train", "--agent", "diswm", "--pretrained", str(teacher_run), "--preset", "debug",
            "--env", ENV_ID, "--run-dir", str(tmp_path / "z"), "--z-dim", "7", *BACKEND]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert (
        len(err) == 1 and err[-1].startswith("error:") and "z_dim=20" in err[-1] and "--z-dim 20" in err[-1]
    )
    # Env frames of the wrong size (32x32) for a 64x64 model.
    argv = ["train", "--agent", "dreamer", "--preset", "debug", "--env", ENV_ID, "--run-dir",
            str(tmp_path / "px"), "--env-kwargs", "{pixel_size: 32}", *BACKEND]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error:") and "renders 32x32 frames" in err and "--image-size 32" in err
    # A dataset of 32x32 videos cannot pretrain the 64x64 model.
    collect(ENV_ID, 2, tmp_path / "small", seed=0, pixel_size=32)
    argv = ["pretrain", "--data", str(tmp_path / "small"), "--preset", "debug", "--run-dir",
            str(tmp_path / "pt"), *BACKEND]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error:") and "32x32" in err and "64x64" in err
    # A pretrained checkpoint whose image size differs from the run's (a copy of the teacher, edited).
    shutil.copytree(teacher_run, tmp_path / "teacher32")
    path = Run.open(tmp_path / "teacher32").checkpoint_path("latest")
    payload = torch.load(path, weights_only=True)
    payload["state"]["meta"]["image_size"] = 32
    torch.save(payload, path)
    argv = ["train", "--agent", "diswm", "--pretrained", str(tmp_path / "teacher32"), "--preset", "debug",
            "--env", ENV_ID, "--run-dir", str(tmp_path / "img"), *BACKEND]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error:") and "image_size=32" in err and "image_size=64" in err


def test_teacher_not_in_optimizer_unless_it_drifts(teacher_run: Path, tmp_path: Path) -> None:
    cfg = dreamer_cfg(tmp_path / "r", agent="diswm", pretrained=str(teacher_run))
    weights = transfer.load_pretrained(cfg)
    teacher = transfer.make_teacher(cfg, weights)
    agent = dreamer.Agent(cfg, (64, 64, 3), 2, beta_vae=True, teacher=teacher)
    ids = {id(p) for p in teacher.parameters()}
    assert all(not p.requires_grad for p in teacher.parameters()) and not teacher.training
    assert ids.isdisjoint(id(p) for p in agent.parameters())
    opts = dreamer.build_optimizers(agent, cfg)
    listed = {id(p) for o in opts.values() for g in o.param_groups for p in g["params"]}
    assert ids.isdisjoint(listed)
    bug = dreamer.build_optimizers(agent, dataclasses.replace(cfg, official_teacher_drift=True))
    assert ids <= {id(p) for g in bug["model"].param_groups for p in g["params"]}
    # Distillation is exactly zero when student and teacher share weights, positive otherwise.
    image = preprocess(torch.randint(0, 255, (2, 3, 64, 64, 3), dtype=torch.uint8))
    from rlkd.world_model.model import distill_loss

    mu_t, _, _ = teacher(image, sample=False)
    mu_s, _, _ = agent.wm.encoder(image, sample=False)
    assert distill_loss(mu_s, mu_t).item() > 0
    agent.wm.encoder.load_state_dict(teacher.state_dict())
    mu_s, _, _ = agent.wm.encoder(image, sample=False)
    assert distill_loss(mu_s, mu_t).item() == pytest.approx(0.0, abs=1e-7)


def test_official_frozen_eta_freezes_eta(teacher_run: Path, tmp_path: Path) -> None:
    cfg = dreamer_cfg(tmp_path / "bug", agent="diswm", pretrained=str(teacher_run), official_frozen_eta=True,
                      total_steps=150, image_log_interval=0)  # fmt: skip
    dreamer.train(cfg, Run.create(cfg, "diswm"), None)
    # A resume keeps the frozen value: eta at the resumed step would differ (the decay is per step).
    run = Run.open(tmp_path / "bug")
    dreamer.train(dataclasses.replace(cfg, total_steps=230), run, run.load_checkpoint())
    assert dreamer.eta_schedule(cfg, 150) != dreamer.eta_schedule(cfg, cfg.prefill)
    eta = scalars(tmp_path / "bug")["world_model/eta"]
    assert len(eta) >= 4 and len(set(eta)) == 1
    assert eta[0] == pytest.approx(dreamer.eta_schedule(cfg, cfg.prefill))


@pytest.mark.parametrize("drift", [False, True])
def test_teacher_drifts_only_with_the_official_flag(teacher_run: Path, tmp_path: Path, drift: bool) -> None:
    cfg = dreamer_cfg(tmp_path / "r", agent="diswm", pretrained=str(teacher_run),
                      official_teacher_drift=drift)  # fmt: skip
    torch.manual_seed(0)
    agent, teacher = dreamer.build_agent(cfg, (64, 64, 3), 2, resuming=False)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    opts = dreamer.build_optimizers(agent, cfg)
    data = {"obs": torch.randint(0, 255, (2, 8, 64, 64, 3), dtype=torch.uint8),
            "action": torch.rand(2, 8, 2) * 2 - 1, "reward": torch.randn(2, 8),
            "is_first": torch.zeros(2, 8, dtype=torch.bool),
            "is_terminal": torch.zeros(2, 8, dtype=torch.bool)}  # fmt: skip
    losses, _ = dreamer.update(agent, opts, data, eta=0.1)
    assert losses["distill"] > 0
    after = teacher.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    if drift:  # trained by the distillation gradient through kl_div's target, as the official code
        assert "head.weight" in changed and "convs.0.weight" in changed
    else:
        assert changed == []  # bit-identical


def test_mismatched_teacher_is_a_user_error(teacher_run: Path, tmp_path: Path) -> None:
    cfg = dreamer_cfg(tmp_path / "r", agent="diswm", pretrained=str(teacher_run), z_dim=7)
    with pytest.raises(UserError, match="z_dim"):
        transfer.load_pretrained(cfg)
    naive = dreamer_cfg(tmp_path / "r", finetune="naive", pretrained=str(teacher_run), deter=40)
    with pytest.raises(UserError, match="deter"):
        transfer.load_pretrained(naive)


def test_naive_finetune_starts_from_pretrained_weights(teacher_run: Path, tmp_path: Path) -> None:
    cfg = dreamer_cfg(tmp_path / "r", finetune="naive", pretrained=str(teacher_run))
    assert dreamer.label(cfg) == "naive-ft"
    weights = transfer.load_pretrained(cfg)
    agent = dreamer.Agent(cfg, (64, 64, 3), 2, beta_vae=True)
    action_columns = agent.wm.rssm.img_in[0].weight[:, cfg.stoch :].clone()
    transfer.naive_init(agent.wm, weights)
    assert agent.teacher is None
    # The action columns keep the student's random init (the official zero-padded pretraining never
    # trains them), not zeros.
    torch.testing.assert_close(agent.wm.rssm.img_in[0].weight[:, cfg.stoch :], action_columns)
    assert action_columns.abs().min() > 0
    torch.testing.assert_close(agent.wm.encoder.head.weight, weights["encoder.head.weight"])
    torch.testing.assert_close(
        agent.wm.rssm.img_in[0].weight[:, : cfg.stoch], weights["rssm.img_in.0.weight"]
    )


def test_dreamer_resume_continues_and_policy_acts(tmp_path: Path) -> None:
    cfg = dreamer_cfg(tmp_path / "d", total_steps=100, image_log_interval=0, checkpoint_interval=60)
    run = Run.create(cfg, "dreamer")
    dreamer.train(cfg, run, None)
    run = Run.open(tmp_path / "d")
    assert run.checkpoint_steps() == [60, 100]
    longer = dataclasses.replace(cfg, total_steps=140)
    dreamer.train(longer, run, run.load_checkpoint())
    payload = run.load_checkpoint()
    assert payload["step"] == 140 and payload["state"]["updates"] > 0
    policy = dreamer.load_policy(run, payload, "cpu")
    act = policy.act(np.zeros((3, 64, 64, 3), np.uint8), np.ones(3, bool), deterministic=True)
    assert act.shape == (3, 2) and act.dtype == np.float32 and np.all(np.abs(act) <= 1)


def test_eval_of_a_pretrain_run_is_one_error_line(teacher_run: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["eval", str(teacher_run), "--episodes", "1"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err.startswith("error:") and "pretrain run" in err and "no policy to evaluate" in err
    # Nor one to monitor: refused before anything is written.
    assert main(["monitor", "calibrate", str(teacher_run), "--episodes", "20"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "no policy to evaluate" in err and not (teacher_run / "monitor").exists()


def test_32x32_dreamer_trains_and_records_videos_as_a_collection_policy(tmp_path: Path) -> None:
    # The official pretraining videos came from a trained agent: `rlkd collect --policy RUN_DIR`.
    run_dir = tmp_path / "agent"
    argv = ["train", "--agent", "dreamer", "--preset", "debug", "--env", "rlkd/PointReach-Pixels-v1",
            "--image-size", "32", "--env-kwargs", "{color_set: train}", "--total-steps", "120",
            "--run-dir", str(run_dir), *BACKEND]  # fmt: skip
    assert main(argv) == 0
    assert Run.open(run_dir).load_checkpoint()["state"]["obs_shape"] == [32, 32, 3]
    out = tmp_path / "videos"
    argv = ["collect", "--env", "rlkd/PointReach-Pixels-v1", "--episodes", "2", "--out", str(out),
            "--policy", str(run_dir), "--env-kwargs", "{color_set: train, image_size: 32}"]  # fmt: skip
    assert main(argv) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["policy"] == str(run_dir) and manifest["image_shape"] == [32, 32, 3]
    episode = np.load(out / manifest["episodes"][0]["file"])
    assert episode["image"].shape == (51, 32, 32, 3)  # reset frame + 50 steps
    # Evaluation rebuilds the env at the run's frame size.
    assert main(["eval", str(run_dir), "--episodes", "2"]) == 0
