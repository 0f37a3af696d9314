"""DisWM in the paper's setting on one GPU, in one go: DMC Reacher Easy videos -> Cheetah Run.

Two steps, the first here, the second on a bare GPU machine (Python 3.12, a CUDA torch, numpy,
scipy, lxml, PyYAML, tensorboard and tqdm installed; no envpool, gymnasium or dm-control, and no
network)::

    # here (package registries reachable): cp312 wheels of what the GPU machine lacks
    python bench/diswm_gpu.py bundle [--dir .whl] [--python-version 3.12]

    # there, from the repository root, everything within ~9 minutes
    python3 -m pip install -q --no-index --no-deps --no-build-isolation --target /tmp/site . .whl/*.whl
    PYTHONPATH=/tmp/site timeout 540 python3 bench/diswm_gpu.py run --out /tmp/diswm --export $OUT

``run`` is the DisWM pipeline at the paper's sizes (``--preset paper`` of ``rlkd pretrain`` and
``rlkd train``: batch 50 x 50, deter 200, stoch 50, units 400, 64x64 frames, action repeat 2):

1. source videos: ``--source-episodes`` random-policy episodes of ``rlkd/DMC-ReacherEasy-v0`` with
   the colour distractor's "train" set (``rlkd collect``);
2. action-free pretraining of the teacher on them (``rlkd pretrain``);
3. DisWM on ``rlkd/DMC-CheetahRun-v0`` starting from the "test" colour set and switching to
   "train" at half of training (``--color-switch``), distilling the teacher (``rlkd train
   --agent diswm --pretrained``);
4. a short evaluation of the last checkpoint, if time is left.

The budget (``--budget-s``) is shared out by measurement, not guessed: each stage first runs a short
calibration (a few updates or env steps), reads its rate from the TensorBoard wall times, then
resumes (``rlkd resume --total-steps N``) to the N that fills its share; every subprocess also has a
hard timeout, so an overrun costs the stage, not the job. Writes ``summary.json`` and
``summary.md`` in ``--out`` (versions, device, seconds, updates and steps per stage, rates and the
last scalars), and with ``--export DIR`` copies them and every run's event file there, flat.

``--smoke`` runs the same stages on CPU at the ``debug`` sizes with 100-step episodes within at
most 100 s, the check that the pipeline works before a GPU is lent (tests/test_diswm_gpu.py).
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

SOURCE, TARGET = "rlkd/DMC-ReacherEasy-v0", "rlkd/DMC-CheetahRun-v0"
WHEELS = ["gymnasium", "farama-notifications", "dm-control", "mujoco", "dm-env", "dm-tree", "pyopengl",
          "glfw"]  # fmt: skip
"""What the GPU machine lacks, at the versions installed here (its image has numpy, scipy, lxml,
absl-py, PyYAML, tensorboard, tqdm, protobuf, pyparsing and requests)."""
SLIM = ("dm_control/locomotion/", "dm_control/suite/dog_assets/", "dm_control/mujoco/testing/",
        "dm_control/blender/", "dm_control/suite/all_domains.png")  # fmt: skip
"""Parts of dm-control's 56 MB wheel that the suite's cheetah and reacher never read (the walkers
and soccer of ``locomotion``, the dog's meshes, test assets): dropped so the bundle travels."""


# --------------------------------------------------------------------------------------- bundle
def bundle(folder: Path, python_version: str) -> None:
    """Download the wheels of ``WHEELS`` for ``python_version`` and slim dm-control's."""
    folder.mkdir(parents=True, exist_ok=True)
    pins = [f"{name}=={importlib.metadata.version(name)}" for name in WHEELS]
    platforms = [f"--platform={p}" for p in ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64",
                 "manylinux_2_24_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64")]  # fmt: skip
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    f"--python-version={python_version}", "--implementation=cp", *platforms,
                    "-d", str(folder), *pins], check=True)  # fmt: skip
    for wheel in folder.glob("dm_control-*.whl"):
        slim_wheel(wheel)
    total = sum(p.stat().st_size for p in folder.glob("*.whl"))
    print(f"{len(list(folder.glob('*.whl')))} wheels in {folder}: {total / 2**20:.1f} MiB")


def slim_wheel(wheel: Path) -> None:
    """Rewrite ``wheel`` without the members under ``SLIM`` (and their ``RECORD`` lines)."""
    slimmed = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(slimmed, "w", zipfile.ZIP_DEFLATED) as dst:
        for info in src.infolist():
            if info.filename.startswith(SLIM):
                continue
            data = src.read(info)
            if info.filename.endswith(".dist-info/RECORD"):
                lines = data.decode().splitlines(keepends=True)
                data = "".join(line for line in lines if not line.startswith(SLIM)).encode()
            dst.writestr(info, data)
    slimmed.replace(wheel)


# ------------------------------------------------------------------------------------------ run
def rlkd(args: list[str], timeout: float) -> float:
    """Run ``python -m rlkd.cli ARGS``; its wall seconds (not an error when it ran out of ``timeout``).

    It runs in the temporary folder: from the repository root, ``-m`` would import the checkout's
    ``rlkd/`` folder, which lacks the ``envs`` and ``agents`` subpackages of an installed rlkd.
    """
    print("$ rlkd", " ".join(args), flush=True)
    t0 = time.time()
    try:
        subprocess.run([sys.executable, "-m", "rlkd.cli", *args], check=True, timeout=max(timeout, 1.0),
                       cwd=tempfile.gettempdir())  # fmt: skip
    except subprocess.TimeoutExpired:
        print(f"stopped at its {timeout:.0f} s timeout; its last checkpoint stands", flush=True)
    return time.time() - t0


def rate(run: Path, after: int = 0) -> tuple[int, float]:
    """(last logged step, seconds per step after step ``after``) from a run's TensorBoard wall times."""
    from rlkd.analysis import load_run

    data = load_run(run)
    curve = max(data.scalars.values(), key=lambda c: len(c.steps))
    keep = curve.steps > after
    steps, wall = curve.steps[keep], curve.wall[keep]
    if len(steps) < 2:
        return data.last_step, float("nan")
    return data.last_step, float((wall[-1] - wall[0]) / (steps[-1] - steps[0]))


def grow(run: Path, calibration_s: float, seconds: float, after: int = 0) -> tuple[int, float]:
    """Resume ``run`` to the total that fills ``seconds``, from its calibration session that took
    ``calibration_s``: its start-up cost is paid again and the estimate keeps a 15% margin, since a
    process stopped at its timeout loses the steps after its last checkpoint. Returns (steps, s/step)."""
    done, per_step = rate(run, after)
    startup = calibration_s - (done - after) * per_step
    total = done + int(0.85 * (seconds - startup) / per_step) if per_step > 0 else done
    if total > done:
        rlkd(["resume", str(run), "--total-steps", str(total)], timeout=seconds)
    return rate(run, after)[0], per_step


def env_extra(args: argparse.Namespace) -> str:
    """More DMC env keywords: 100-step episodes for --smoke, the official wrapper's stepping."""
    extra = ", time_limit: 100" if args.smoke else ""
    return extra + (", official_wrapper: true" if args.official_wrapper else "")


def stage_source(out: Path, args: argparse.Namespace) -> dict:
    """Random-policy Reacher Easy videos in the "train" colours."""
    data = out / "source_videos"
    if not (data / "manifest.json").exists():
        rlkd(["collect", "--env", SOURCE, "--episodes", str(args.source_episodes), "--out", str(data),
              "--env-kwargs", f"{{color_set: train{env_extra(args)}}}"], timeout=args.budget_s)  # fmt: skip
    manifest = json.loads((data / "manifest.json").read_text()) if (data / "manifest.json").exists() else {}
    return {"episodes": args.source_episodes, "manifest": manifest}


def stage_pretrain(out: Path, args: argparse.Namespace, seconds: float) -> dict:
    """The action-free teacher: calibrate on a few updates, then fill ``seconds``."""
    run, t0 = out / "pretrain", time.time()
    first = 20 if not args.smoke else 10
    took = rlkd(["pretrain", *args.sizes, "--data", str(out / "source_videos"), "--env", SOURCE,
                 "--device", args.device, "--total-steps", str(first), "--log-interval", "2",
                 "--checkpoint-interval", "250", "--image-log-interval", "0", "--run-dir", str(run)],
                timeout=seconds)  # fmt: skip
    # The first updates carry one-off costs (allocation, kernel selection): timed from update 2.
    done, per_update = grow(run, took, seconds - took, after=2)
    return {"updates": done, "seconds_per_update": per_update, "seconds": time.time() - t0}


def stage_diswm(out: Path, args: argparse.Namespace, seconds: float) -> dict:
    """DisWM on Cheetah Run ("test" colours, switching to "train" at half): calibrate, then fill."""
    run, t0 = out / "diswm", time.time()
    prefill = 2_500 if not args.smoke else 50  # the paper preset's random prefill
    first, log = (prefill + 500, 50) if not args.smoke else (prefill + 50, 10)
    took = rlkd(["train", "--agent", "diswm", *args.sizes, "--env", TARGET, "--device", args.device,
          "--env-kwargs", f"{{color_set: test{env_extra(args)}}}",
          "--color-switch", "--color-switch-to", "train",
          "--pretrained", str(out / "pretrain"), "--total-steps", str(first), "--log-interval", str(log),
          "--checkpoint-interval", "500", "--run-dir", str(run)], timeout=seconds)  # fmt: skip
    # Timed after the prefill (random steps, no updates). The colour switch comes at half of the
    # final total, so the calibration must end before it: no growth unless it at least doubles.
    done, per_step = rate(run, after=prefill)
    left = seconds - took - args.eval_s
    if per_step > 0 and 0.85 * left / per_step >= done:
        done, per_step = grow(run, took, left, after=prefill)
    return {"env_steps": done, "seconds_per_env_step": per_step, "seconds": time.time() - t0}


def last_scalars(run: Path) -> dict[str, float]:
    """The last value of every scalar tag of a run."""
    from rlkd.analysis import load_run

    return {tag: float(c.values[-1]) for tag, c in sorted(load_run(run).scalars.items())}


def environment(device: str) -> dict:
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, "device": device,
            "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            **{name: importlib.metadata.version(name) for name in ("mujoco", "dm-control", "gymnasium")},
            }  # fmt: skip


def stage_eval(out: Path, args: argparse.Namespace, seconds: float) -> dict:
    """A few episodes of the last DisWM checkpoint, if ``seconds`` allow."""
    run = out / "diswm"
    if seconds < args.eval_s / 2 or not list((run / "checkpoints").glob("step_*.pt")):
        return {"skipped": f"{seconds:.0f} s left"}
    rlkd(["eval", str(run), "--episodes", str(args.eval_episodes), "--device", args.device], timeout=seconds)
    found = sorted((run / "eval").glob("eval_step_*.json"))
    return json.loads(found[-1].read_text()) if found else {"skipped": "timed out"}


def run_all(args: argparse.Namespace) -> dict:
    """Every stage within ``args.budget_s``; returns the summary."""
    out, t0 = Path(args.out).resolve(), time.time()
    out.mkdir(parents=True, exist_ok=True)
    left = lambda: args.budget_s - (time.time() - t0)  # noqa: E731
    summary: dict = {"environment": environment(args.device), "budget_s": args.budget_s,
                     "smoke": args.smoke, "source": SOURCE, "target": TARGET}  # fmt: skip
    summary["source_videos"] = stage_source(out, args)
    summary["pretrain"] = stage_pretrain(out, args, args.pretrain_share * left())
    summary["diswm"] = stage_diswm(out, args, left())
    summary["eval"] = stage_eval(out, args, left())
    for name in ("pretrain", "diswm"):
        summary[name]["last_scalars"] = last_scalars(out / name)
    summary["seconds"] = time.time() - t0
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    (out / "summary.md").write_text(markdown(summary))
    return summary


def markdown(summary: dict) -> str:
    env, pre, dis = summary["environment"], summary["pretrain"], summary["diswm"]
    returns = {k: v for k, v in dis["last_scalars"].items() if "return" in k}
    sizes = "smoke" if summary["smoke"] else "paper sizes"
    lines = [
        f"# DisWM {summary['source']} -> {summary['target']} ({sizes})", "", f"{env}", "",
        f"- pretraining: {pre['updates']} updates, {pre['seconds_per_update']:.3f} s each, "
        f"{pre['seconds']:.0f} s",
        f"- DisWM: {dis['env_steps']} env steps, {dis['seconds_per_env_step']:.3f} s each, "
        f"{dis['seconds']:.0f} s",
        f"- last returns: {returns}",
        f"- evaluation: {summary['eval']}",
        f"- total {summary['seconds']:.0f} s of a {summary['budget_s']:.0f} s budget",
    ]  # fmt: skip
    return "\n".join(lines) + "\n"


def export(out: Path, folder: Path) -> None:
    """Copy the summaries and each run's event files into ``folder``, flat (``<run>.<file>``)."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("summary.json", "summary.md"):
        shutil.copy(out / name, folder / name)
    for run in ("pretrain", "diswm"):
        for events in sorted((out / run).glob("events.out.tfevents.*")):
            shutil.copy(events, folder / f"{run}.{events.name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    b = sub.add_parser("bundle", help="download the cp312 wheels the GPU machine lacks")
    b.add_argument("--dir", default=".whl")
    b.add_argument("--python-version", default="3.12")
    r = sub.add_parser("run", help="the pipeline within a time budget")
    r.add_argument("--out", required=True, help="work folder (runs, videos, summaries)")
    r.add_argument("--export", help="also copy summaries and event files here, flat")
    r.add_argument("--budget-s", type=float, default=480.0, help="wall-clock budget of all stages")
    r.add_argument("--pretrain-share", type=float, default=0.35, help="share of the time after collection")
    r.add_argument("--source-episodes", type=int, default=10, help="500-step Reacher Easy episodes")
    r.add_argument("--eval-episodes", type=int, default=3)
    r.add_argument("--eval-s", type=float, default=45.0, help="seconds kept for the evaluation")
    r.add_argument("--device", default="cuda")
    r.add_argument("--smoke", action="store_true", help="CPU, debug sizes, 100-step episodes")
    r.add_argument("--official-wrapper", action="store_true",
                   help="step and colour DMC as the official DisWM wrapper (4 control steps per agent step, "
                        "2 x the last call's reward, 250-step episodes, its distractor)")  # fmt: skip
    args = parser.parse_args()
    if args.command == "bundle":
        bundle(Path(args.dir), args.python_version)
        return
    if args.smoke:
        args.device, args.source_episodes, args.eval_episodes = "cpu", 2, 1
        args.budget_s, args.eval_s = min(args.budget_s, 100.0), 10.0
    args.sizes = ["--preset", "debug" if args.smoke else "paper"]
    summary = run_all(args)
    if args.export:
        export(Path(args.out), Path(args.export))
    print(markdown(summary))


if __name__ == "__main__":
    main()
