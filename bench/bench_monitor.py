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
import time
from collections.abc import Iterator
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


# ================================================================================= candidate study
# Issue 36's study (``--study candidates``): what is scored, RND vs RDD, windows and the episode
# statistic, judged by threshold-free AUROC on the AGV shifts, a sensor fault and a pixel Dreamer
# meeting the other colour set. Plan, fixed before any run: bench/results/monitor_candidates/PLAN.md.

REACH_ENV = "rlkd/PointReach-Pixels-v1"
SENSOR_FAULT = "sensor fault: lidar range 8 -> 1.5 m"
BASE = {"alpha": ALPHA, "window": 5}
CANDIDATES: dict[str, dict[str, dict[str, Any]]] = {
    # One factor at a time around the default (policy embedding, RND, window 5, partial windows, max).
    "agv": {"default": {}, "obs": {"features": "obs"}, "layer1": {"features": "layer1"},
            "all": {"features": "all"}, "rdd": {"novelty": "rdd"}, "skip10": {"skip": 10},
            "full": {"full_windows": True}, "mean": {"statistic": "mean"}},
    "reach": {"default": {}, "deter": {"features": "deter"}, "stoch": {"features": "stoch"},
              "obs": {"features": "obs"}, "rdd": {"novelty": "rdd"}, "skip10": {"skip": 10},
              "full": {"full_windows": True}, "mean": {"statistic": "mean"}},
}  # fmt: skip
BASELINES = ("value", "obs_novelty", "uncertainty", "jitter")
"""Scores every candidate monitor also computes; judged from the default candidate's monitor."""


def study_envs(task: str) -> dict[str, tuple[str, dict[str, Any]]]:
    """Label -> (env id, env kwargs added to the run's) of a study task's envs."""
    if task == "agv":
        return {**shifts(), SENSOR_FAULT: (ENV, {"lidar_range": 1.5})}
    return {"in-distribution": (REACH_ENV, {}), "colours: the other set": (REACH_ENV, {"color_set": "test"}),
            "colours: none (fixed)": (REACH_ENV, {"color_set": "none"})}  # fmt: skip


def train_reach(out: Path, seeds: list[int], steps: int) -> list[Path]:
    """DreamerV2 pixel policies (``--preset cpu-pixels``) in the train colour set."""
    runs = [out / f"dreamer__{seed}" for seed in seeds]
    jobs = [(run, ["--agent", "dreamer", "--preset", "cpu-pixels", "--env", REACH_ENV, "--env-kwargs",
                   "{color_set: train}", "--seed", str(seed), "--total-steps", str(steps),
                   "--run-dir", str(run), "--torch-threads", "1"])
            for run, seed in zip(runs, seeds, strict=True)]  # fmt: skip
    run_all(jobs, parallel=1)
    return runs


def save_episodes(path: Path, episodes: list[Any]) -> None:
    """Episodes as one compressed npz (fields concatenated over steps), written then renamed."""
    cat = lambda get: np.concatenate([get(e) for e in episodes])  # noqa: E731
    arrays = {"lengths": np.array([e.length for e in episodes]),
              "ret": np.array([e.ret for e in episodes]),
              "success": np.array([-1 if e.success is None else int(e.success) for e in episodes]),
              }  # fmt: skip
    for name in ("obs", "features", "value", "mode"):
        arrays[name] = cat(lambda e, n=name: getattr(e, n))
    if episodes[0].uncertainty is not None:
        arrays["uncertainty"] = cat(lambda e: e.uncertainty)
    for name in episodes[0].views:
        arrays[f"view_{name}"] = cat(lambda e, n=name: e.views[n])
    tmp = path.with_suffix(".tmp.npz")
    np.savez_compressed(tmp, **arrays)
    tmp.replace(path)


def load_episodes(path: Path) -> list[Any]:
    from rlkd.monitor.traces import Episode

    data = dict(np.load(path))
    ends = np.cumsum(data["lengths"])
    split = lambda x: np.split(x, ends[:-1])  # noqa: E731
    fields = {n: split(data[n]) for n in ("obs", "features", "value", "mode")}
    unc = split(data["uncertainty"]) if "uncertainty" in data else [None] * len(ends)
    views = {k[5:]: split(v) for k, v in data.items() if k.startswith("view_")}
    return [Episode(**{n: fields[n][i] for n in fields}, uncertainty=unc[i],
                    success=None if data["success"][i] < 0 else bool(data["success"][i]),
                    ret=float(data["ret"][i]),
                    views={k: v[i] for k, v in views.items()}) for i in range(len(ends))]  # fmt: skip


def rollouts(run: Path, task: str, calibration_episodes: int, episodes: int) -> dict[str, list[Any]]:
    """Calibration and evaluation episodes of a run with every view kept, cached in ``run/study/``."""
    from rlkd.monitor.workflow import CALIBRATION_SEED_OFFSET, EVAL_SEED_OFFSET, roll_out

    folder = run / "study"
    folder.mkdir(exist_ok=True)
    jobs = {"calibration": (None, {}, calibration_episodes, CALIBRATION_SEED_OFFSET)}
    jobs |= {label: (env, kw, episodes, EVAL_SEED_OFFSET) for label, (env, kw) in study_envs(task).items()}
    out = {}
    for i, (label, (env, kwargs, n, offset)) in enumerate(jobs.items()):
        path = folder / f"rollout{i - 1 if i else 'cal'}_{n}.npz"
        if not path.exists():
            began = time.perf_counter()
            ro = roll_out(run, "latest", env, kwargs, n, offset, True, views=None)
            save_episodes(path, ro.episodes)
            steps = sum(e.length for e in ro.episodes)
            took = time.perf_counter() - began
            print(f"{run.name} {label}: {n} episodes, {steps} steps, {took:.0f} s", flush=True)
        out[label] = load_episodes(path)
    return out


def judge_candidate(options: dict[str, Any], eps: dict[str, list[Any]], horizon: int) -> dict[str, Any]:
    """Fit and calibrate one candidate monitor; per env and score: episode statistics, failure flags,
    first alarms and the early-warning points (plain lists, for JSON)."""
    from rlkd.monitor import MonitorConfig
    from rlkd.monitor.ranking import early_points
    from rlkd.monitor.workflow import monitor_for

    cfg = MonitorConfig(**BASE, **options)
    kept = [e for e in eps["calibration"] if e.success is not False]
    n_fit = round(len(kept) * cfg.fit_fraction)
    mon = monitor_for(cfg, kept[0])
    mon.fit(kept[:n_fit])
    mon.calibrate(kept[n_fit:])
    result: dict[str, Any] = {"calibration_successes": len(kept), "envs": {}}
    for label, episodes in eps.items():
        if label == "calibration":
            continue
        windowed = [mon.scores(e) for e in episodes]
        failed = [bool(e.failed) for e in episodes]
        env: dict[str, Any] = {"failed": failed, "statistic": {}, "alarm": {}, "early": {}}
        for name in windowed[0]:
            env["statistic"][name] = [mon.statistics(w)[name] for w in windowed]
            s, y, i = early_points([w[name] for w in windowed], failed, horizon)
            env["early"][name] = {"score": s.tolist(), "positive": y.tolist(), "episode": i.tolist()}
        env["alarm"] = [mon.alarms(w) for w in windowed]
        result["envs"][label] = env
    return result


def pooled_envs(results: list[dict[str, Any]], labels: list[str]) -> Iterator[tuple[dict[str, Any], int]]:
    """Each seed's record of each of ``labels``, with the pooled id of its first episode (ids run on
    over seeds and labels, so a bootstrap resamples whole episodes)."""
    offset = 0
    for res in results:
        for label in labels:
            env = res["envs"][label]
            yield env, offset
            offset += len(env["failed"])


def pool_study(results: list[dict[str, Any]], labels: list[str], score: str) -> tuple[np.ndarray, ...]:
    """Episode statistics, failure flags and episode ids of ``score`` over seeds and ``labels``."""
    stats, failed, ids = [], [], []
    for env, offset in pooled_envs(results, labels):
        stats += env["statistic"][score]
        failed += env["failed"]
        ids += range(offset, offset + len(env["failed"]))
    return np.array(stats, np.float64), np.array(failed, bool), np.array(ids)


def early_auroc(results: list[dict[str, Any]], labels: list[str], score: str) -> dict[str, Any]:
    """Early-warning AUROC (the score at a step predicts a failure within the horizon) over seeds and
    ``labels``, with its 95% interval from resampling episodes."""
    from rlkd.monitor.ranking import bootstrap

    scores, positive, ids, episodes = [], [], [], 0
    for env, offset in pooled_envs(results, labels):
        early = env["early"][score]
        scores += early["score"]
        positive += early["positive"]
        ids += [offset + i for i in early["episode"]]
        episodes = offset + len(env["failed"])
    ids_array = np.array(ids, int)
    return bootstrap(np.array(scores), np.array(positive, bool), ids_array, episodes, 2000, 0)["auroc"]


def alarm_rates(results: list[dict[str, Any]], labels: list[str]) -> dict[str, float]:
    """The conformal novelty rule's alarm rate on failed and on successful episodes (TPR, FPR) over
    ``labels``, and its false-alarm rate on in-distribution successes (bounded by alpha)."""
    def hits(label_set: list[str], want_failed: bool) -> list[bool]:
        envs = [r["envs"][lb] for r in results for lb in label_set]
        return [a["novelty"] is not None for env in envs
                for a, f in zip(env["alarm"], env["failed"], strict=True) if f == want_failed]  # fmt: skip

    rate = lambda h: float(np.mean(h)) if h else float("nan")  # noqa: E731
    own = hits(labels[:1], False)
    return {"tpr": rate(hits(labels, True)), "fpr": rate(hits(labels, False)),
            "fpr_in_distribution": rate(own), "in_distribution_alarms": int(sum(own)),
            "in_distribution_successes": len(own)}  # fmt: skip


def analyse_study(task: str, results: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """By the PLAN: harmful shifts, each candidate's (and baseline's) pooled AUROC, the decision."""
    from rlkd.monitor.ranking import auroc_difference, bootstrap

    default = results["default"]
    labels = list(default[0]["envs"])
    success = {lb: 1 - float(np.mean([f for r in default for f in r["envs"][lb]["failed"]])) for lb in labels}
    own = success["in-distribution"]
    harmful = [lb for lb in labels if lb != "in-distribution" and success[lb] < own - 0.1]
    pooled_labels = ["in-distribution", *harmful]
    entries = {f"candidate {c}": (res, "novelty") for c, res in results.items()}
    entries |= {f"baseline {s}": (default, s) for s in BASELINES}
    value = pool_study(default, pooled_labels, "value")
    table: dict[str, Any] = {}
    for name, (res, score) in entries.items():
        stat, failed, ids = pool_study(res, pooled_labels, score)
        per_env = {}  # every shift, harmful or not (benign ones: reported, not decided on)
        for lb in labels[1:]:
            s, f, i = pool_study(res, [lb], score)
            per_env[lb] = bootstrap(s, f, i, len(i), 2000, 0)["auroc"]
        pooled_boot = bootstrap(stat, failed, ids, len(ids), 2000, 0)
        table[name] = {"pooled": pooled_boot["auroc"], "ap": pooled_boot["ap"],
                       "vs_value": auroc_difference(stat, value[0], failed, ids, len(ids)),
                       "early": early_auroc(res, pooled_labels, score), "per_env": per_env}  # fmt: skip
        if name.startswith("candidate"):
            table[name]["alarm"] = alarm_rates(res, pooled_labels)
    wins = [n for n, r in table.items() if n.startswith("candidate") and r["vs_value"]["ci95"][0] > 0
            and r["pooled"]["ci95"][0] > 0.5]  # fmt: skip
    best = max(table, key=lambda n: table[n]["pooled"]["value"])
    winner = max(wins, key=lambda n: table[n]["pooled"]["value"]) if wins else None
    return {"task": task, "success": success, "harmful": harmful, "auroc": table, "winner": winner,
            "best_measured": best}  # fmt: skip


def study(args: argparse.Namespace) -> None:
    """Train (kept if done), roll out (cached), judge every candidate (cached) and analyse."""
    out = Path(args.out)
    summary = {}
    for task in args.tasks:
        folder = out / task
        folder.mkdir(parents=True, exist_ok=True)
        runs = (train(folder, args.seeds, args.steps) if task == "agv"
                else train_reach(folder, args.seeds, args.reach_steps))  # fmt: skip
        results: dict[str, list[dict[str, Any]]] = {c: [] for c in CANDIDATES[task]}
        for run in runs:
            eps = rollouts(run, task, args.calibration_episodes, args.episodes)
            for cand, options in CANDIDATES[task].items():
                path = run / "study" / f"candidate_{cand}_{args.episodes}.json"
                if not path.exists():
                    began = time.perf_counter()
                    path.write_text(json.dumps(judge_candidate(options, eps, args.horizon)))
                    print(f"{run.name} {cand}: {time.perf_counter() - began:.0f} s", flush=True)
                results[cand].append(json.loads(path.read_text()))
        summary[task] = analyse_study(task, results)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "summary.md").write_text(study_markdown(summary))
    print(study_markdown(summary))


def study_markdown(summary: dict[str, Any]) -> str:
    """Per task: the policy's success per env, the harmful shifts, and every candidate's and
    baseline's pooled AUROC, AUROC - value's, AP, early-warning AUROC and per-shift AUROC."""
    cell = lambda m: f"{m['value']:.2f} [{m['ci95'][0]:.2f}, {m['ci95'][1]:.2f}]"  # noqa: E731
    lines = []
    for task, s in summary.items():
        rates = ", ".join(f"{lb} {v:.2f}" for lb, v in s["success"].items())
        harmful = ", ".join(s["harmful"]) or "none"
        shifted = [lb for lb in s["success"] if lb != "in-distribution"]
        lines += [f"## {task}", "", f"Success (seeds pooled): {rates}.", f"Harmful: {harmful}.",
                  "", "| score | AUROC pooled | AUROC - value | AP | early AUROC | "
                  + " | ".join(f"AUROC {lb}" + (" (harmful)" if lb in s["harmful"] else "") for lb in shifted)
                  + " | novelty alarm TPR / FPR (in-dist. false alarms) |",
                  "|---" * (6 + len(shifted)) + "|"]  # fmt: skip
        for name, r in s["auroc"].items():
            per_env = " | ".join(cell(r["per_env"][lb]) for lb in shifted)
            a = r.get("alarm")
            own = f"{a['in_distribution_alarms']}/{a['in_distribution_successes']}" if a else ""
            rule = f"{a['tpr']:.2f} / {a['fpr']:.2f} ({own})" if a else "-"
            lines.append(f"| {name} | {cell(r['pooled'])} | {cell(r['vs_value'])} | {cell(r['ap'])} | "
                         f"{cell(r['early'])} | {per_env} | {rule} |")  # fmt: skip
        lines += ["", f"Winner (beats value and the random alarm): {s['winner'] or 'none'}; "
                  f"best measured: {s['best_measured']}.", ""]  # fmt: skip
    return "\n".join(lines)


def main() -> None:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--out", default="runs/monitor_bench")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3])
    parser.add_argument("--steps", type=int, default=150_000)
    parser.add_argument("--calibration-episodes", type=int, default=200)
    parser.add_argument("--episodes", type=int, default=100)
    parser.add_argument("--study", choices=["shifts", "candidates"], default="shifts",
                        help="shifts: the FIPER benchmark above; candidates: issue 36's study (its PLAN.md)")
    parser.add_argument("--tasks", nargs="+", choices=["agv", "reach"], default=["agv", "reach"])
    parser.add_argument("--reach-steps", type=int, default=22_000, help="candidates: Dreamer pixel env steps")
    parser.add_argument("--horizon", type=int, default=20, help="candidates: early-warning steps ahead")
    args = parser.parse_args()
    if args.study == "candidates":
        study(args)
        return
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    runs = train(out, args.seeds, args.steps)
    summary = analyse(judge(runs, args.calibration_episodes, args.episodes))
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "summary.md").write_text(markdown(summary))
    print(markdown(summary))


if __name__ == "__main__":
    main()
