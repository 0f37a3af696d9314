"""DisWM transfer on CPU: DreamerV2 from scratch vs naive fine-tuning vs DisWM, point reach from pixels.

Source: ``rlkd/PointReach-Pixels-v1`` with the "train" colour distractors (floor and target hues
in [0.02, 0.48], random-walked every step): random-policy videos, action-free pretraining of the
beta-VAE teacher (``rlkd collect`` + ``rlkd pretrain``). Target: the same task with the "test"
colours (hues in [0.52, 0.98], disjoint). Every agent is ``rlkd train --preset cpu-pixels`` (32x32
frames) on the target for the same env steps and seeds; ``naive-ft`` starts from the pretrained
encoder, RSSM and decoder, ``diswm`` distils the frozen teacher into its beta-VAE latent.

Usage::

    python bench/bench_transfer.py [--out runs/transfer] [--seeds 1 2 3 4 5] [--steps 12000]
        [--parallel 2] [--agents dreamer naive-ft diswm] [--analyse-only]
    # the eta-0 control (PLAN.md's addendum), against the committed runs' per-seed figures:
    python bench/bench_transfer.py --agents diswm-eta0 --merge bench/results/transfer_reach/summary.json

Runs are pinned one per core (``bench/bench_dreamer.py``'s runner); finished runs are kept and
unfinished ones resume from their last checkpoint, so the command can be repeated after a kill.

Analysis (fixed before any run; ``bench/results/transfer/PLAN.md``):

* sample efficiency (the paper's claim): mean ``charts/episodic_return`` of the training episodes
  that end after the random prefill and by half of training;
* final: 50 episodes of the last checkpoint with the actor's mode (``rlkd eval --deterministic``),
  mean return and success rate;
* per agent: mean over seeds with a 95% percentile-bootstrap interval; DisWM against each baseline:
  the probability of improvement (rliable) with its 95% bootstrap interval. DisWM is said to help
  on a metric when that interval's lower end is above 0.5, to hurt when its upper end is below 0.5.

Writes ``summary.json``, ``summary.md`` and ``curves.png`` in ``--out``.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dreamer import baselines, episode_curve, run_all

ENV = "rlkd/PointReach-Pixels-v1"
SIZES = ["--image-size", "32", "--deter", "200", "--stoch", "16", "--hidden", "64", "--units", "64",
         "--mlp-layers", "2", "--cnn-depth", "8", "--z-dim", "20"]  # fmt: skip
"""The cpu-pixels preset's model: pretraining must build the same shapes for naive fine-tuning."""
AGENTS = {"dreamer": ["--agent", "dreamer"], "naive-ft": ["--agent", "dreamer", "--finetune", "naive"],
          "diswm": ["--agent", "diswm"],
          "diswm-eta0": ["--agent", "diswm", "--eta-init", "0", "--eta-final", "0"]}  # fmt: skip
"""``diswm-eta0`` is the control of PLAN.md's addendum: DisWM's beta-VAE student with no distillation."""
PREFILL = 1_000  # the cpu-pixels preset's random prefill: its episodes are left out of the mean


def teacher(out: Path, episodes: int, updates: int) -> Path:
    """Random source videos in the "train" colours, then action-free pretraining (kept if done)."""
    data, run = out / "source_videos", out / "pretrain"
    if not (data / "manifest.json").exists():
        shutil.rmtree(data, ignore_errors=True)
        kwargs = "{color_set: train, image_size: 32}"
        subprocess.run([sys.executable, "-m", "rlkd.cli", "collect", "--env", ENV, "--episodes",
                        str(episodes), "--out", str(data), "--env-kwargs", kwargs], check=True)  # fmt: skip
    argv = ["--data", str(data), *SIZES, "--batch-size", "16", "--batch-length", "32", "--model-lr", "1e-3",
            "--torch-threads", "1", "--total-steps", str(updates), "--checkpoint-interval", "1000",
            "--image-log-interval", "1000", "--run-dir", str(run)]  # fmt: skip
    run_all([(run, argv)], 1, command="pretrain")
    return run


def jobs(out: Path, args: argparse.Namespace, pretrained: Path) -> list[tuple[Path, list[str]]]:
    """(run folder, ``rlkd train`` arguments) of every agent and seed, seeds first."""
    todo = []
    for seed in args.seeds:
        for name in args.agents:
            run = out / f"{name}__{seed}"
            argv = [*AGENTS[name], "--preset", "cpu-pixels", "--env", ENV,
                    "--env-kwargs", "{color_set: test}", "--seed", str(seed),
                    "--total-steps", str(args.steps), "--run-dir", str(run),
                    "--checkpoint-interval", str(args.steps // 2),
                    "--eta-decay-steps", str(args.steps // 2)]  # fmt: skip
            if name != "dreamer":
                argv += ["--pretrained", str(pretrained)]
            todo.append((run, argv))
    return todo


@functools.cache
def scalars(run: Path) -> object:
    """The run's TensorBoard scalars, read once (``EventAccumulator``)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run), size_guidance={"scalars": 0})
    acc.Reload()
    return acc


def first_half_mean(run: Path, steps: int) -> float:
    """Mean return of the training episodes ending in (PREFILL, steps / 2]."""
    events = [e for e in scalars(run).Scalars("charts/episodic_return") if PREFILL < e.step <= steps // 2]
    return float(np.mean([e.value for e in events]))


DIAGNOSTICS = ("world_model/image_nll", "world_model/reward_mse", "world_model/kl_value", "losses/distill",
               "world_model/eta")  # fmt: skip


def diagnostics(out: Path, args: argparse.Namespace, bins: int = 4) -> dict[str, dict[str, list[float]]]:
    """Mean over seeds of the world-model diagnostics in each quarter of training, per agent (what
    to read when the metrics disagree with the paper; ``losses/distill`` is weighted by eta)."""
    edges = np.linspace(0, args.steps, bins + 1)
    result: dict[str, dict[str, list[float]]] = {}
    for name in args.agents:
        per_tag: dict[str, list[list[float]]] = {}
        for seed in args.seeds:
            acc = scalars(out / f"{name}__{seed}")
            for tag in (t for t in DIAGNOSTICS if t in acc.Tags()["scalars"]):
                steps = np.array([e.step for e in acc.Scalars(tag)])
                values = np.array([e.value for e in acc.Scalars(tag)])
                per_tag.setdefault(tag, []).append(
                    [float(values[(steps > a) & (steps <= b)].mean()) for a, b in itertools.pairwise(edges)]
                )
        result[name] = {tag: np.nanmean(rows, 0).tolist() for tag, rows in per_tag.items()}
    return result


def final_eval(run: Path, episodes: int, steps: int) -> dict[str, float]:
    """The deterministic evaluation of the run's last checkpoint (the one ``rlkd eval`` saved, if
    it has the same episodes)."""
    from rlkd.analysis.evaluate import evaluate

    saved = run / "eval" / f"eval_step_{steps}.json"
    ev = json.loads(saved.read_text()) if saved.exists() else {}
    if ev.get("episodes") != episodes or not ev.get("deterministic"):
        ev = evaluate(run, "latest", episodes, deterministic=True)
    return {"mean_return": float(ev["mean_return"]), "success_rate": float(ev["success_rate"])}


def analyse(out: Path, args: argparse.Namespace) -> dict:
    from rlkd.analysis.numerics import bootstrap_band, probability_of_improvement

    per: dict[str, dict[str, list[float]]] = {}
    if args.merge:  # agents run earlier: their per-seed metrics from a committed summary.json
        earlier = json.loads(Path(args.merge).read_text())
        if (earlier["seeds"], earlier["steps"]) != (args.seeds, args.steps):
            sys.exit(f"error: {args.merge} has other seeds or steps; pass the same --seeds and --steps")
        for name, metrics in earlier["agents"].items():
            per[name] = {key: m["per_seed"] for key, m in metrics.items()}
    for name in args.agents:
        runs = [out / f"{name}__{s}" for s in args.seeds]
        rows = [{"first_half": first_half_mean(run, args.steps), **final_eval(run, args.episodes, args.steps)}
                for run in runs]  # fmt: skip
        per[name] = {k: [r[k] for r in rows] for k in rows[0]}
    refs = baselines("reach", ENV, args.episodes, color_set="test")
    summary: dict = {"steps": args.steps, "seeds": args.seeds, "agents": {}, "diswm_vs": {},
                     "references": refs, "merged_from": args.merge}  # fmt: skip
    for name, metrics in per.items():
        summary["agents"][name] = {}
        for key, values in metrics.items():
            band = bootstrap_band(np.asarray(values)[:, None])
            summary["agents"][name][key] = {"mean": float(band.mean[0]), "ci95": [float(band.lower[0]),
                                            float(band.upper[0])], "per_seed": values}  # fmt: skip
    if "diswm" in per:
        for base in (b for b in per if b != "diswm"):
            summary["diswm_vs"][base] = {
                key: list(probability_of_improvement(np.array(per["diswm"][key]), np.array(per[base][key])))
                for key in per["diswm"]
            }
    summary["diagnostics_per_quarter"] = diagnostics(out, args)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "summary.md").write_text(markdown(summary))
    plot(out, args)
    print(markdown(summary))
    return summary


def verdict(poi: list[float]) -> str:
    """The fixed reading of a probability of improvement and its interval."""
    if poi[1] > 0.5:
        return "helps"
    if poi[2] < 0.5:
        return "hurts"
    return "not shown"


def markdown(summary: dict) -> str:
    fmt = lambda m, f: f"{m['mean']:{f}} [{m['ci95'][0]:{f}}, {m['ci95'][1]:{f}}]"  # noqa: E731
    lines = [f"{summary['steps']} env steps, seeds {summary['seeds']}", "",
             "| agent | first-half return | eval return | eval success |", "|---|---|---|---|"]  # fmt: skip
    for name, m in summary["agents"].items():
        lines.append(f"| {name} | {fmt(m['first_half'], '.1f')} | {fmt(m['mean_return'], '.1f')} | "
                     f"{fmt(m['success_rate'], '.2f')} |")  # fmt: skip
    for name, ref in summary.get("references", {}).items():
        lines.append(f"| {name} controller | - | {ref['mean_return']:.1f} | {ref['success_rate']:.2f} |")
    if summary["diswm_vs"]:
        lines += ["", "| P(DisWM > baseline) | first-half return | eval return | eval success |",
                  "|---|---|---|---|"]  # fmt: skip
        for base, pois in summary["diswm_vs"].items():
            cells = [f"{p[0]:.2f} [{p[1]:.2f}, {p[2]:.2f}] {verdict(p)}" for p in pois.values()]
            lines.append(f"| vs {base} | " + " | ".join(cells) + " |")
    lines += ["", "Diagnostics, mean over seeds per quarter of training:", "",
              "| agent | tag | 1st | 2nd | 3rd | 4th |", "|---|---|---|---|---|---|"]  # fmt: skip
    for name, tags in summary.get("diagnostics_per_quarter", {}).items():
        for tag, values in tags.items():
            lines.append(f"| {name} | {tag} | " + " | ".join(f"{v:.3g}" for v in values) + " |")
    return "\n".join(lines) + "\n"


def plot(out: Path, args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for i, name in enumerate(args.agents):
        for j, seed in enumerate(args.seeds):
            steps, curve = episode_curve(out / f"{name}__{seed}", window=1_000)
            ax.plot(steps, curve, color=f"C{i}", alpha=0.7, label=name if j == 0 else None)
    ax.axvline(args.steps // 2, color="k", ls=":", label="half of training")
    ax.set(xlabel="env steps", ylabel="episodic return (trailing 1000 steps)",
           title="reach: train -> test colours")  # fmt: skip
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="runs/transfer")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4, 5])
    parser.add_argument("--agents", nargs="+", default=list(AGENTS), choices=list(AGENTS))
    parser.add_argument("--steps", type=int, default=12_000, help="target env steps per run")
    parser.add_argument("--source-episodes", type=int, default=200, help="random source videos to record")
    parser.add_argument("--pretrain-updates", type=int, default=3_000)
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time, one core each")
    parser.add_argument("--episodes", type=int, default=50, help="evaluation episodes per run")
    parser.add_argument("--analyse-only", action="store_true", help="skip training")
    parser.add_argument("--merge", help="summary.json of agents run earlier (same seeds, steps)")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.analyse_only:
        pretrained = teacher(out, args.source_episodes, args.pretrain_updates)
        run_all(jobs(out, args, pretrained), args.parallel)
    analyse(out, args)


if __name__ == "__main__":
    main()
