"""--capture-video: an episode every N steps to files and TensorBoard, without changing training."""

from __future__ import annotations

from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from rlkd.cli import main
from tests.helpers import read_scalars


def test_videos_during_training_leave_training_unchanged(tmp_path):
    base = ["train", "--preset", "debug", "--total-steps", "512"]
    assert main([*base, "--run-dir", str(tmp_path / "plain")]) == 0
    assert main([*base, "--run-dir", str(tmp_path / "video"), "--capture-video", "256"]) == 0
    videos = sorted(p.name for p in (tmp_path / "video" / "videos").iterdir())
    assert videos == ["step_256.gif", "step_512.gif"]
    with Image.open(tmp_path / "video" / "videos" / "step_256.gif") as im:
        assert im.n_frames > 1 and im.size == (600, 400)
    acc = EventAccumulator(str(tmp_path / "video"), size_guidance={"images": 0})
    acc.Reload()
    shown = acc.Images("videos/episode")
    assert [e.step for e in shown] == [256, 512] and shown[0].encoded_image_string[:6] == b"GIF89a"
    # Recording restores the random generators: every training scalar is the same as without videos.
    plain, video = read_scalars(tmp_path / "plain"), read_scalars(tmp_path / "video")
    for scalars in (plain, video):
        del scalars["charts/SPS"]
    assert plain == video
