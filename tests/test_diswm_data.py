"""DisWM's data: videos in (mp4, gif, ...), a Dreamer run's replay as the teacher's data, and the
official sampler (an episode first, then a window inside it)."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v2 as imageio
import numpy as np
import pytest
from rlkd.agents import dreamer

from rlkd.cli import main
from rlkd.core.run import Run
from rlkd.world_model.datasets import SequenceDataset, replay_episodes
from rlkd.world_model.replay import Replay
from rlkd.world_model.videos import square_resize, video_episodes, write_video

REACH = "rlkd/PointReach-Pixels-v1"
FAST = ["--env-backend", "gymnasium", "--torch-threads", "1"]


def error_line(capsys: pytest.CaptureFixture) -> str:
    """The one line a refused command printed on stderr."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    return lines[0]


# ----------------------------------------------------------------------------- videos in


def test_collected_mp4_decodes_to_the_npz_frames(tmp_path: Path) -> None:
    # Same env seed and random policy: the mp4 and npz datasets hold the same episodes.
    kw = ["--env", REACH, "--episodes", "2", "--env-kwargs", "{color_set: train, image_size: 32}"]
    assert main(["collect", *kw, "--out", str(tmp_path / "npz")]) == 0
    assert main(["collect", *kw, "--out", str(tmp_path / "mp4"), "--format", "mp4"]) == 0
    names = sorted(p.name for p in (tmp_path / "mp4").iterdir())
    assert names == ["episode_000000.mp4", "episode_000001.mp4"]
    for n in range(2):
        frames = np.load(tmp_path / "npz" / f"episode_00000{n}.npz")["image"]  # (51, 32, 32, 3)
        (episode,) = video_episodes(tmp_path / "mp4" / f"episode_00000{n}.mp4", 32, 0, 8)
        assert episode["image"].shape == frames.shape and episode["action"].shape == (51, 0)
        assert episode["is_first"].tolist() == [True] + [False] * 50 and not episode["is_terminal"].any()
        # mp4 is lossy: close to the frames, far closer than two different frames are.
        error = np.abs(episode["image"].astype(float) - frames).mean()
        assert error < 6.0 and error < np.abs(episode["image"].astype(float) - frames[::-1]).mean() / 3


def test_pretrain_learns_from_a_folder_of_mp4_files(tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    rng = np.random.default_rng(0)
    for n in range(2):  # a moving bright square on noise, 45 frames of 48x64 (cropped to 48x48)
        frames = rng.integers(0, 40, (45, 48, 64, 3), dtype=np.uint8)
        for t in range(45):
            frames[t, 10:22, t : t + 12] = 255
        write_video(videos / f"clip{n}.mp4", frames)
    run_dir = tmp_path / "pre"
    argv = ["pretrain", "--data", str(videos), "--preset", "debug", "--image-size", "32",
            "--video-episode-length", "20", "--total-steps", "30", "--run-dir", str(run_dir),
            *FAST]  # fmt: skip
    assert main(argv) == 0
    payload = Run.open(run_dir).load_checkpoint()
    assert payload["step"] == 30 and payload["state"]["meta"]["image_size"] == 32
    # 45 frames cut by 20: pieces of 20, 20 and 5; the 5-frame piece is shorter than a window (8).
    data = SequenceDataset(videos, 8, 4, image_size=32, video_episode_length=20)
    assert [len(ep["reward"]) for ep in data.episodes] == [20, 20, 20, 20]
    assert data.sample()["image"].shape == (4, 8, 32, 32, 3)


def test_frames_are_centre_cropped_and_area_resized(tmp_path: Path) -> None:
    # 48 x 64 frames: the centre 48 x 48 crop (columns 8..55) is 200 on its left half, 0 on its
    # right; the outer columns are 90, which the crop removes. Area resizing 48 -> 32 averages
    # 1.5 x 1.5 source pixels: columns 0..15 are 200, 16..31 are 0 (the halves meet on a pixel edge).
    frame = np.full((48, 64, 3), 90, np.uint8)
    frame[:, 8:32], frame[:, 32:56] = 200, 0
    out = square_resize(frame, 32)
    assert out.shape == (32, 32, 3)
    assert (out[:, :16] == 200).all() and (out[:, 16:] == 0).all()
    # GIFs are lossless (few colours): the decoded frames are exactly the resized ones.
    # (The outer columns change per frame so the GIF writer keeps all 12; the crop removes them.)
    frames = [frame.copy() for _ in range(12)]
    for t, f in enumerate(frames):
        f[:, :8] = 10 * t
    imageio.mimsave(tmp_path / "clip.gif", frames, duration=0.05)
    (episode,) = video_episodes(tmp_path / "clip.gif", 32, 0, 8)
    assert episode["image"].shape == (12, 32, 32, 3)
    np.testing.assert_array_equal(episode["image"][5], out)


@pytest.mark.parametrize("case", ["unreadable", "empty", "short"])
def test_a_bad_video_file_is_one_error_line_and_nothing_is_written(
    tmp_path: Path, capsys: pytest.CaptureFixture, case: str
) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    write_video(videos / "a_good.mp4", np.zeros((30, 32, 32, 3), np.uint8))
    bad = videos / "b_bad.mp4"
    if case == "unreadable":
        bad.write_bytes(b"not a video" * 100)
    elif case == "empty":
        bad.write_bytes(b"")
    else:
        write_video(bad, np.zeros((5, 32, 32, 3), np.uint8))  # 5 frames < the window of 8
    run_dir = tmp_path / "pre"
    argv = ["pretrain", "--data", str(videos), "--preset", "debug", "--image-size", "32",
            "--run-dir", str(run_dir), *FAST]  # fmt: skip
    assert main(argv) == 2
    line = error_line(capsys)
    assert str(bad) in line and ("5 frames" in line if case == "short" else "cannot be decoded" in line)
    assert not run_dir.exists()


def test_a_folder_with_neither_manifest_nor_videos_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["pretrain", "--data", str(tmp_path), "--preset", "debug", *FAST]) == 2
    assert "neither a dataset folder" in error_line(capsys)


# ----------------------------------------------------------------------------- a run's replay out


def test_collect_from_run_writes_the_finished_episodes_of_the_replay(tmp_path: Path) -> None:
    run_dir = tmp_path / "source"
    argv = ["train", "--agent", "dreamer", "--preset", "debug", "--env", REACH, "--image-size", "32",
            "--env-kwargs", "{color_set: train}", "--total-steps", "130", "--run-dir", str(run_dir),
            *FAST]  # fmt: skip
    assert main(argv) == 0
    out = tmp_path / "teacher_data"
    assert main(["collect", "--from-run", str(run_dir), "--out", str(out)]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    # 130 steps of 50-step episodes: two finished (51 frames each: reset + 50), the third running.
    assert [e["length"] for e in manifest["episodes"]] == [51, 51]
    assert manifest["env_id"] == REACH and manifest["color_set"] == "train"
    replay = Run.open(run_dir).load_checkpoint()["state"]["replay"]
    frames = replay["data"]["obs"][0].numpy()
    for n in range(2):
        ep = np.load(out / f"episode_00000{n}.npz")
        np.testing.assert_array_equal(ep["image"], frames[51 * n : 51 * (n + 1)])
        assert ep["is_first"][0] and not ep["is_first"][1:].any()
        np.testing.assert_allclose(ep["reward"].sum(), manifest["episodes"][n]["return"], rtol=1e-6)
    # The teacher learns from it.
    pre = ["pretrain", "--data", str(out), "--preset", "debug", "--image-size", "32", "--total-steps", "5",
           "--official-sampler", "--run-dir", str(tmp_path / "pre"), *FAST]  # fmt: skip
    assert main(pre) == 0


def test_replay_episodes_skip_a_start_the_ring_overwrote() -> None:
    replay = Replay(1, 10, (2,), np.float32, 1, seed=0)
    for t in range(14):  # episodes start at 0, 4 and 9; the ring keeps steps 4..13
        replay.add(0, np.full(2, t, np.float32), np.zeros(1), 0.0, t in (0, 4, 9), False)
    episodes = replay_episodes(replay.state_dict())
    assert [ep["image"][:, 0].tolist() for ep in episodes] == [[4, 5, 6, 7, 8]]


def test_collect_from_a_run_without_replay_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    run_dir = tmp_path / "ppo"
    assert main(["train", "--preset", "debug", "--env", "CartPole-v1", "--total-steps", "64",
                 "--run-dir", str(run_dir), *FAST]) == 0  # fmt: skip
    capsys.readouterr()
    assert main(["collect", "--from-run", str(run_dir), "--out", str(tmp_path / "d")]) == 2
    assert "keeps no replay" in error_line(capsys) and not (tmp_path / "d").exists()


# ----------------------------------------------------------------------------- official sampler


def filled_replay(lengths: list[int], episode_first: bool) -> Replay:
    """One env holding finished episodes of the given lengths (then a running one of 3 steps)."""
    replay = Replay(1, 1000, (1,), np.float32, 1, seed=0, episode_first=episode_first)
    for n, length in enumerate([*lengths, 3]):
        for t in range(length):
            replay.add(0, np.array([n], np.float32), np.zeros(1), 0.0, t == 0, False)
    return replay


def test_official_sampler_draws_an_episode_first_then_a_window_inside_it() -> None:
    # Episodes of 6, 40 and 4 steps, windows of 4: the official rule skips the 4-step one
    # (total - length < 1) and draws the other two equally often; windows never cross an episode.
    replay = filled_replay([6, 40, 4], episode_first=True)
    batch = replay.sample(4000, 4)
    episode = batch["obs"][:, :, 0]
    assert (episode == episode[:, :1]).all()  # one episode per window
    assert not batch["is_first"][:, 1:].any()
    share = np.bincount(episode[:, 0].astype(int), minlength=4) / 4000
    assert share[2] == 0 and share[3] == 0  # too short; still running
    assert abs(share[0] - 0.5) < 0.03 and abs(share[1] - 0.5) < 0.03
    # rlkd's default draws starts uniformly: the 40-step episode holds most of them (37 of the 43 + 1
    # + ... starts), and windows may cross into the next episode.
    default = filled_replay([6, 40, 4], episode_first=False).sample(4000, 4)["obs"][:, 0, 0]
    assert (default == 1).mean() > 0.6


def test_official_sampler_in_the_pretraining_dataset(tmp_path: Path) -> None:
    from rlkd.world_model.datasets import write_episode

    for n, length in enumerate([9, 60]):
        ep = {"image": np.full((length, 32, 32, 3), n, np.uint8), "action": np.zeros((length, 2), np.float32),
              "reward": np.zeros(length, np.float32), "is_first": np.arange(length) == 0,
              "is_terminal": np.zeros(length, bool)}  # fmt: skip
        write_episode(tmp_path / f"e{n}.npz", ep)
    entries = [{"file": f"e{n}.npz"} for n in range(2)]
    (tmp_path / "manifest.json").write_text(json.dumps({"episodes": entries}))
    def share(**kw: bool) -> float:  # of windows drawn from the long episode
        return float(np.mean([SequenceDataset(tmp_path, 8, 1, seed=s, **kw).sample()["image"][0, 0, 0, 0]
                              for s in range(400)]))  # fmt: skip

    assert abs(share(official_sampler=True) - 0.5) < 0.08  # episode first: half each
    assert share() > 0.85  # starts: 53 of 55 in the long one


# ----------------------------------------------------------------------------- acting and replay


def test_unclipped_actions_are_stored_raw_in_the_replay(tmp_path: Path) -> None:
    maxima = {}
    for official in (False, True):
        cfg = dreamer.DreamerConfig(env_id=REACH, run_dir=str(tmp_path / str(official)),
                                    env_backend="gymnasium", image_size=32,
                                    official_unclipped_actions=official,
                                    **dreamer.PRESETS["debug"] | {"total_steps": 150})  # fmt: skip
        cfg.validate()
        run = Run.create(cfg, "dreamer")
        dreamer.train(cfg, run, None)
        action = Run.open(run.path).load_checkpoint()["state"]["replay"]["data"]["action"][0].numpy()
        maxima[official] = np.abs(action[cfg.prefill + 1 :]).max()  # the actor's steps
    assert maxima[False] <= 1.0 < maxima[True]


def test_z_is_sampled_when_the_policy_acts_even_deterministically(tmp_path: Path) -> None:
    import torch

    cfg = dreamer.DreamerConfig(env_id=REACH, run_dir=str(tmp_path / "d"), env_backend="gymnasium",
                                image_size=32, **dreamer.PRESETS["debug"])
    cfg.validate()
    agent = dreamer.Agent(cfg, (32, 32, 3), 2, beta_vae=True)
    policy = dreamer.Policy(agent, "cpu", -np.ones(2, np.float32), np.ones(2, np.float32))
    obs, first = np.full((1, 32, 32, 3), 120, np.uint8), np.ones(1, bool)
    feats = []
    for seed in (0, 1, 0):
        torch.manual_seed(seed)
        policy.latent = None
        feats.append(policy.inspect(obs, first, deterministic=True).features)
    # The official encoder always reparameterises z: other noise, another latent; same noise, the same.
    assert not np.allclose(feats[0], feats[1])
    np.testing.assert_array_equal(feats[0], feats[2])
