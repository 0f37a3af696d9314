"""Run-time failure prediction (``rlkd monitor``) of AGV policies under shifts, against baselines.

Usage::

    python bench/bench_monitor.py [--out runs/monitor_bench] [--seeds 1 2 3] [--steps 150000]
        [--calibration-episodes 200] [--episodes 100]

Policies: ``rlkd train --preset classic --env rlkd/AGVWarehouse-Bay-v0 --env-kwargs "{reward_mode:
dense}"`` (PPO, vector observations: goal bearing, lidar, own pose; the Gaussian's std does not
depend on the state, so FIPER's uncertainty score is the bootstrapped head ensemble), one per
seed, ``--steps`` env steps. Each is calibrated with ``rlkd monitor calibrate`` on the training
scene (``--calibration-episodes``, alpha 0.05, window 5, RND; half the successful episodes fit the
scorers, the other half set the thresholds) and evaluated with ``rlkd monitor eval`` on
``--episodes`` episodes of each env in :data:`SHIFTS`: the training scene itself (in-distribution:
the false-alarm check) and five shifts. Whether a shift is harmful or benign is read from the
policy's success rate on it, not assumed.

Analysis, fixed before any run:

* per env and rule (``fiper``: both scores; ``novelty`` and ``uncertainty`` alone; ``obs_novelty``:
  RND on raw observations, the usual approach; ``value``: minus the critic's value; ``random``: an
  alarm at FIPER's alarm rate at a uniform step; ``jitter`` and ``fiper_jitter``: the other
  candidate uncertainty substitute, the mode action's change): accuracy, TPR, FPR and the median lead time of
  alarmed failures, with the episodes of all seeds pooled and a 95% percentile bootstrap interval
  over episodes (``rlkd.monitor.evaluation.summarise``); every seed's value in ``summary.json``;
* over the shifts: the rules' accuracy over all shifted episodes pooled (harmful and benign
  together: an alarm on a benign shift's success is a false positive);
* the uncertainty substitute for PPO's Gaussian: the candidate (``uncertainty``, the ensemble, or
  ``jitter``) whose FIPER rule (``fiper`` or ``fiper_jitter``) has the higher pooled accuracy over
  the shifts is the one the docs name; the default (``fiper``, the ensemble) changes only if
  ``fiper_jitter``'s interval lies wholly above it;
* the calibration guarantee: the false-alarm rate on in-distribution successes, per seed and
  pooled, against alpha = 0.05; read as "within its bound" when the pooled 95% interval's lower end
  is at most alpha.

Writes ``summary.json`` and ``summary.md`` in ``--out`` (runs under ``--out/ppo__<seed>``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dreamer import run_all

ENV = "rlkd/AGVWarehouse-Bay-v0"
TRAIN_KWARGS: dict[str, Any] = {"reward_mode": "dense"}
ALPHA = 0.05


def shifts() -> dict[str, tuple[str, dict[str, Any]]]:
    """Label -> (env id, env kwargs added to the run's) of every env the monitors are judged on."""
    from rlkd.envs.agv import WarehouseMap, get_scenario

    bay = get_scenario("bay")
    lanes = ((1.0, 2.0, 5.0, 2.0), (5.0, 4.0, 1.0, 4.0))  # two obstacles shuttling across the bay
    moving = WarehouseMap(**{**_fields(bay), "obstacle_paths": lanes, "name": "bay-dynamic"})
    big = WarehouseMap(**{**_fields(bay), "width": 9.0, "height": 9.0, "name": "bay-9m",
                          "start_regions": ((0.0, 0.0, 9.0, 9.0),), "goal_regions": ((0.0, 0.0, 9.0, 9.0),),
                          "min_start_goal_distance": 4.0})  # fmt: skip
    return {
        "in-distribution": (ENV, {}),
        "layout: dock (rack across the bay)": ("rlkd/AGVWarehouse-Dock-v0", {}),
        "moving obstacles": (ENV, {"custom_map": moving}),
        "start/goal outside: 9 m floor, >= 4 m apart": (ENV, {"custom_map": big}),
        "actuator: turn rate / 3": (ENV, {"w_max": 0.5}),
        "sensor: lidar range 8 -> 3 m": (ENV, {"lidar_range": 3.0}),
    }


def _fields(scene: Any) -> dict[str, Any]:
    """A map's constructor fields (its derived arrays left out)."""
    import dataclasses

    return {f.name: getattr(scene, f.name) for f in dataclasses.fields(scene) if f.init}


def train(out: Path, seeds: list[int], steps: int) -> list[Path]:
    runs = [out / f"ppo__{seed}" for seed in seeds]
    kwargs = "{" + ", ".join(f"{k}: {v}" for k, v in TRAIN_KWARGS.items()) + "}"
    jobs = [(run, ["--preset", "classic", "--env", ENV, "--env-kwargs", kwargs, "--seed", str(seed),
                   "--total-steps", str(steps), "--run-dir", str(run), "--torch-threads", "1"])
            for run, seed in zip(runs, seeds, strict=True)]  # fmt: skip
    run_all(jobs, parallel=1)
    return runs


def judge(runs: list[Path], calibration_episodes: int, episodes: int) -> dict[str, list[dict[str, Any]]]:
    """Calibrate every run (kept if done) and evaluate it on every env; the records by env label."""
    from rlkd.monitor import MonitorConfig
    from rlkd.monitor.evaluation import evaluate
    from rlkd.monitor.workflow import calibrate

    records: dict[str, list[dict[str, Any]]] = {}
    for run in runs:
        if not (run / "monitor" / "monitor.pt").exists():
            calibrate(run, MonitorConfig(alpha=ALPHA), calibration_episodes)
        for i, (label, (env_id, kwargs)) in enumerate(shifts().items()):
            saved = run / "monitor" / "eval" / f"shift{i}.json"
            record = json.loads(saved.read_text()) if saved.exists() else None
            if record is None or record["episodes"] != episodes:
                record = evaluate(run, episodes, env_id, kwargs, label=f"shift{i}")
            records.setdefault(label, []).append(record)
            print(f"{run.name} {label}: success {record['success_rate']:.2f}", flush=True)
    return records


def pooled(records: list[dict[str, Any]]) -> dict[str, Any]:
    """The rules' metrics over the episodes of every seed's record together."""
    from rlkd.monitor.evaluation import summarise

    rows = [row for r in records for row in r["per_episode"]]
    return summarise(rows)


def analyse(records: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    summary: dict[str, Any] = {"alpha": ALPHA, "envs": {}}
    for label, recs in records.items():
        summary["envs"][label] = {
            "success_rate": float(np.mean([r["success_rate"] for r in recs])),
            "per_seed_success": [r["success_rate"] for r in recs],
            "rules": pooled(recs),
            "per_seed": [{rule: {k: v["value"] for k, v in m.items() if k != "lead_time"}
                          for rule, m in r["rules"].items()} for r in recs],
        }  # fmt: skip
    shifted = [r for label, recs in records.items() if label != "in-distribution" for r in recs]
    summary["all_shifts"] = pooled(shifted)
    return summary


def markdown(summary: dict[str, Any]) -> str:
    cell = lambda m: f"{m['value']:.2f} [{m['ci95'][0]:.2f}, {m['ci95'][1]:.2f}]"  # noqa: E731
    lines = []
    for label, env in [*summary["envs"].items(), ("all shifts pooled", {"rules": summary["all_shifts"]})]:
        rate = env.get("success_rate")
        title = f"**{label}**" + ("" if rate is None else f" (policy success {rate:.2f})")
        lines += ["", title, "", "| rule | accuracy | TPR | FPR | median lead (steps) |", "|" + "---|" * 5]
        for rule, m in env["rules"].items():
            lead = m["lead_time"]["median"]
            tpr = cell(m["tpr"]) if np.isfinite(m["tpr"]["value"]) else "-"
            lines.append(f"| {rule} | {cell(m['accuracy'])} | {tpr} | {cell(m['fpr'])} | "
                         f"{'-' if lead is None else f'{lead:.0f}'} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--out", default="runs/monitor_bench")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--steps", type=int, default=150_000)
    parser.add_argument("--calibration-episodes", type=int, default=200)
    parser.add_argument("--episodes", type=int, default=100)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = train(out, args.seeds, args.steps)
    summary = analyse(judge(runs, args.calibration_episodes, args.episodes))
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "summary.md").write_text(markdown(summary))
    print(markdown(summary))


if __name__ == "__main__":
    main()
