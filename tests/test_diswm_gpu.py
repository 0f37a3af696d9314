"""bench/diswm_gpu.py: the one-go GPU script's wheel slimming, and its --smoke run on CPU."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

from rlkd.analysis import load_run
from tests.helpers import BENCH, bench_script

SCRIPT = BENCH / "diswm_gpu.py"


def test_slim_wheel_drops_the_unread_parts_and_their_record_lines(tmp_path: Path) -> None:
    wheel = tmp_path / "dm_control-1.0-py3-none-any.whl"
    members = {
        "dm_control/suite/cheetah.py": b"x = 1\n",
        "dm_control/suite/dog_assets/dog.xml": b"<mujoco/>",
        "dm_control/locomotion/walkers/ant.xml": b"<mujoco/>",
        "dm_control/suite/all_domains.png": b"png",
    }
    record = "".join(f"{name},sha256=abc,{len(data)}\n" for name, data in members.items())
    with zipfile.ZipFile(wheel, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
        z.writestr("dm_control-1.0.dist-info/RECORD", record + "dm_control-1.0.dist-info/RECORD,,\n")
    bench_script("diswm_gpu").slim_wheel(wheel)
    with zipfile.ZipFile(wheel) as z:
        assert sorted(z.namelist()) == ["dm_control-1.0.dist-info/RECORD", "dm_control/suite/cheetah.py"]
        assert z.read("dm_control/suite/cheetah.py") == b"x = 1\n"
        lines = z.read("dm_control-1.0.dist-info/RECORD").decode().splitlines()
    assert lines == ["dm_control/suite/cheetah.py,sha256=abc,6", "dm_control-1.0.dist-info/RECORD,,"]


def test_smoke_run_trains_every_stage_and_exports_flat(tmp_path: Path) -> None:
    out, export = tmp_path / "work", tmp_path / "export"
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "run", "--smoke", "--budget-s", "60", "--out", str(out),
         "--export", str(export)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["environment"]["device"] == "cpu" and summary["smoke"]
    assert summary["seconds"] < 60 + 30  # the budget, plus at most one stage's overrun
    # Each stage ran at least its calibration: 10 pretraining updates, the 50-step prefill + 50.
    assert summary["pretrain"]["updates"] >= 10
    assert summary["diswm"]["env_steps"] >= 100
    # The teacher DisWM distilled is a pretraining checkpoint written by those updates.
    assert list((out / "pretrain" / "checkpoints").glob("step_*.pt"))
    assert load_run(out / "diswm").scalars["charts/episodic_return"].steps.size > 0
    steps = sorted(int(p.stem.split("_")[1]) for p in (out / "diswm" / "checkpoints").glob("step_*.pt"))
    if "skipped" not in summary["eval"]:
        assert summary["eval"]["checkpoint_step"] == steps[-1]
    names = sorted(p.name for p in export.iterdir())
    assert {"summary.json", "summary.md"} <= set(names)
    assert any(n.startswith("pretrain.events.out.tfevents.") for n in names)
    assert any(n.startswith("diswm.events.out.tfevents.") for n in names)
    assert all(p.is_file() for p in export.iterdir())  # flat: nothing below the export folder
    assert "DMC-ReacherEasy-v0 -> rlkd/DMC-CheetahRun-v0" in (export / "summary.md").read_text()
