"""DisWM transfer on CPU with the paper's protocol: point reach from pixels, colours switched at half.

Stages, each kept when done (repeat the command after a kill; unfinished runs resume):

1. **Source run**: DreamerV2 (``--preset cpu-pixels``) on ``rlkd/PointReach-Pixels-v1`` in the
   "train" colours (floor and target hues in [0.02, 0.48], random-walked every step), with a
   14-pixel target square (``TARGET_PX``, every stage).
2. **Teacher data**: every finished episode of that run, from the random prefill to competent ones
   (``rlkd collect --from-run``): the official ``train_eps``.
3. **Teacher**: action-free pretraining on them (``rlkd pretrain --official-sampler``, the
   cpu-pixels model sizes), then ``bench/probe_teacher.py``: the benchmark goes on only if the
   teacher's latent holds the target (R^2 >= 0.5 and >= half the agent's), or with ``--force``.
4. **Target runs**: each agent from scratch in the "train" colours, switched to "test" (hues in
   [0.52, 0.98], disjoint) at half of training (``--color-switch``, official ``dreamer.py``
   l. 471-475): ``dreamer`` (DreamerV2), ``naive-ft`` (encoder, RSSM and decoder from the teacher),
   ``diswm`` (distillation of the frozen teacher at the official strength: eta frozen at its build
   value, ``--official-frozen-eta``, and the KL summed over a 50-step window, ``--distill-window
   50``) and ``diswm-eta0`` (the same student with eta 0: no teacher).

Usage::

    python bench/bench_transfer.py [--out runs/transfer_switch] [--seeds 1 2 3 4 5] [--steps 30000]
        [--agents dreamer naive-ft diswm diswm-eta0] [--parallel 2] [--analyse-only] [--force]

Analysis (fixed before any target run; ``bench/results/transfer_switch/PLAN.md``): per agent and
seed, the mean return of the training episodes ending after the prefill and by the switch
(sample efficiency, the paper's claim), of those ending after the switch (adaptation), and 50
evaluation episodes of the last checkpoint in the "test" colours with the actor's mode; mean over
seeds with a 95% percentile-bootstrap interval; DisWM against each other agent: the probability of
improvement with its 95% bootstrap interval ("helps" when its lower end is above 0.5, "hurts" when
its upper end is below 0.5). Writes ``summary.json``, ``summary.md``, ``curves.png`` and
``reconstructions.png`` in ``--out``.
"""

from __future__ import annotations

import argparse
import functools
import io
import itertools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_dreamer import baselines, episode_curve, run_all

ENV = "rlkd/PointReach-Pixels-v1"
TARGET_PX = 14
"""Target square side (pixels at 64x64; the env's default is 9). At 9 the action-free teacher's
latent never held the target (R^2 0.31 after the official 20,000 updates); at 14 a screen on random
videos reached 0.84 after 1,000 updates (PLAN.md, addendum of 2026-12-07). Every stage uses it."""
TASK_KWARGS = f"{{color_set: train, target_px: {TARGET_PX}}}"
SIZES = ["--image-size", "32", "--deter", "200", "--stoch", "16", "--hidden", "64", "--units", "64",
         "--mlp-layers", "2", "--cnn-depth", "8", "--z-dim", "20"]  # fmt: skip
"""The cpu-pixels preset's model: pretraining must build the same shapes for naive fine-tuning."""
AGENTS = {"dreamer": ["--agent", "dreamer"], "naive-ft": ["--agent", "dreamer", "--finetune", "naive"],
          "diswm": ["--agent", "diswm", "--official-frozen-eta", "--distill-window", "50"],
          "diswm-eta0": ["--agent", "diswm", "--eta-init", "0", "--eta-final", "0"]}  # fmt: skip
PLAN_SEEDS = (1, 2, 3, 4, 5)
"""The plan's seeds: the summary is read only once every agent has all of them."""
PREFILL = 1_000  # the cpu-pixels preset's random prefill: its episodes are left out of the means
SOURCE_SEED = 100
EVAL_SEED = 20_000


def rlkd(*argv: str) -> None:
    subprocess.run([sys.executable, "-m", "rlkd.cli", *argv], check=True)


def teacher(out: Path, args: argparse.Namespace) -> Path:
    """Source run, its episodes, the pretrained teacher and its probe (each kept when done)."""
    source, data, run = out / "source", out / "source_episodes", out / "pretrain"
    argv = ["--agent", "dreamer", "--preset", "cpu-pixels", "--env", ENV, "--env-kwargs",
            TASK_KWARGS, "--seed", str(SOURCE_SEED), "--total-steps", str(args.source_steps),
            "--run-dir", str(source)]  # fmt: skip
    run_all([(source, argv)], 1)
    if not (data / "manifest.json").exists():
        rlkd("collect", "--from-run", str(source), "--out", str(data))
    argv = ["--data", str(data), *SIZES, "--batch-size", "16", "--batch-length", "32",
            "--model-lr", "1e-3", "--official-sampler", "--torch-threads", "1",
            "--total-steps", str(args.pretrain_updates), "--checkpoint-interval", "2000",
            "--image-log-interval", "2000", "--run-dir", str(run)]  # fmt: skip
    run_all([(run, argv)], 1, command="pretrain")
    probe = run / "probe_teacher.json"  # probed again when the teacher has trained further
    if not probe.exists() or json.loads(probe.read_text()).get("updates") != args.pretrain_updates:
        script = Path(__file__).with_name("probe_teacher.py")
        kwargs = f"{{target_px: {TARGET_PX}}}"
        subprocess.run([sys.executable, str(script), str(run), "--env-kwargs", kwargs], check=True)
    held = json.loads(probe.read_text())["train"]
    if not held["holds_task"] and not args.force:
        sys.exit(f"error: the teacher does not hold the target (R^2 {held['target_r2']:.2f}, agent "
                 f"{held['agent_r2']:.2f}); pretrain longer (--pretrain-updates) or --force")  # fmt: skip
    return run


def needs_teacher(agents: list[str]) -> bool:
    """Whether any of ``agents`` starts from or distils the pretrained teacher."""
    return any(name != "dreamer" for name in agents)


def jobs(out: Path, args: argparse.Namespace, pretrained: Path | None) -> list[tuple[Path, list[str]]]:
    """(run folder, ``rlkd train`` arguments) of every agent and seed, seeds first."""
    todo = []
    for seed, name in itertools.product(args.seeds, args.agents):
        run = out / f"{name}__{seed}"
        argv = [*AGENTS[name], "--preset", "cpu-pixels", "--env", ENV, "--env-kwargs",
                TASK_KWARGS, "--color-switch", "--seed", str(seed),
                "--total-steps", str(args.steps), "--run-dir", str(run),
                "--checkpoint-interval", str(args.steps // 4)]  # fmt: skip
        if needs_teacher([name]):
            argv += ["--pretrained", str(pretrained)]
        todo.append((run, argv))
    return todo


@functools.cache
def scalars(run: Path) -> object:
    """The run's TensorBoard scalars and images, read once (``EventAccumulator``)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run), size_guidance={"scalars": 0, "images": 0})
    acc.Reload()
    return acc


def mean_return(run: Path, start: int, end: int) -> float:
    """Mean return of the training episodes ending in (start, end]."""
    events = [e for e in scalars(run).Scalars("charts/episodic_return") if start < e.step <= end]
    return float(np.mean([e.value for e in events]))


def final_eval(run: Path, episodes: int, color_set: str = "test") -> dict[str, float]:
    """``episodes`` episodes of the last checkpoint in ``color_set``, the actor's mode (saved as
    ``eval/final_<set>.json`` and read back when it has the same episodes)."""
    saved = run / "eval" / f"final_{color_set}.json"
    if saved.exists() and json.loads(saved.read_text()).get("episodes") == episodes:
        return json.loads(saved.read_text())
    from rlkd.envs import make_vec

    from rlkd.analysis.evaluate import env_kwargs_of, load_run_policy

    loaded, _, agent, policy = load_run_policy(run, "latest", "cpu")
    kwargs = env_kwargs_of(loaded.config, agent) | {"color_set": color_set}
    envs = make_vec(ENV, 10, EVAL_SEED, "gymnasium", **kwargs)
    obs, _ = envs.reset(seed=EVAL_SEED)
    first, returns, successes = np.ones(10, bool), [], []
    while len(returns) < episodes:
        obs, _, term, trunc, info = envs.step(policy.act(obs, first, deterministic=True))
        first = term | trunc
        for i in np.flatnonzero(info.get("_episode", np.zeros(10, bool))):
            returns.append(float(info["episode"]["r"][i]))
            successes.append(float(info["episode"]["success"][i]))
    envs.close()
    result = {"episodes": episodes, "mean_return": float(np.mean(returns[:episodes])),
              "success_rate": float(np.mean(successes[:episodes]))}  # fmt: skip
    saved.parent.mkdir(exist_ok=True)
    saved.write_text(json.dumps(result))
    return result


DIAGNOSTICS = ("world_model/image_nll", "world_model/reward_mse", "world_model/kl_value", "losses/distill",
               "world_model/eta")  # fmt: skip


def diagnostics(
    runs: dict[str, list[Path]], steps: int, bins: int = 4
) -> dict[str, dict[str, list[float]]]:
    """Mean over seeds of the world-model diagnostics in each quarter of training, per agent
    (``losses/distill`` is weighted by eta and the window scale)."""
    edges = np.linspace(0, steps, bins + 1)
    result: dict[str, dict[str, list[float]]] = {}
    for name, folders in runs.items():
        per_tag: dict[str, list[list[float]]] = {}
        for run in folders:
            acc = scalars(run)
            for tag in (t for t in DIAGNOSTICS if t in acc.Tags()["scalars"]):
                at = np.array([e.step for e in acc.Scalars(tag)])
                values = np.array([e.value for e in acc.Scalars(tag)])
                per_tag.setdefault(tag, []).append(
                    [float(values[(at > a) & (at <= b)].mean()) for a, b in itertools.pairwise(edges)]
                )
        result[name] = {tag: np.nanmean(rows, 0).tolist() for tag, rows in per_tag.items()}
    return result


def finished(run: Path, steps: int) -> bool:
    """Whether the run has its final checkpoint."""
    return (run / "checkpoints" / f"step_{steps:012d}.pt").exists()


def finished_runs(out: Path, steps: int) -> tuple[dict[str, list[Path]], bool]:
    """Every finished run of the plan's agents and seeds in ``out`` (whichever agents and seeds an
    invocation ran: the reading is of the whole benchmark, and a session may run a few of its runs),
    and whether all of them are in."""
    runs = {n: [out / f"{n}__{s}" for s in PLAN_SEEDS if finished(out / f"{n}__{s}", steps)]
            for n in AGENTS}  # fmt: skip
    complete = all(len(r) == len(PLAN_SEEDS) for r in runs.values())
    return {n: r for n, r in runs.items() if r}, complete


def analyse(out: Path, args: argparse.Namespace) -> dict:
    from rlkd.analysis.numerics import bootstrap_band, probability_of_improvement

    runs, complete = finished_runs(out, args.steps)
    half = args.steps // 2
    per: dict[str, dict[str, list[float]]] = {}
    for name, folders in runs.items():
        rows = [{"first_half": mean_return(r, PREFILL, half),
                 "after_switch": mean_return(r, half, args.steps),
                 **{k: v for k, v in final_eval(r, args.episodes).items() if k != "episodes"}}
                for r in folders]  # fmt: skip
        per[name] = {k: [row[k] for row in rows] for k in rows[0]}
    refs = baselines("reach", ENV, args.episodes, color_set="test", target_px=TARGET_PX)
    summary: dict = {"steps": args.steps, "seeds": {n: [int(r.name.split("__")[1]) for r in f]
                     for n, f in runs.items()}, "agents": {}, "diswm_vs": {}, "references": refs}  # fmt: skip
    summary["complete"] = complete
    probe = out / "pretrain" / "probe_teacher.json"
    summary["teacher_probe"] = json.loads(probe.read_text()) if probe.exists() else None
    for name, metrics in per.items():
        summary["agents"][name] = {}
        for key, values in metrics.items():
            band = bootstrap_band(np.asarray(values)[:, None])
            summary["agents"][name][key] = {"mean": float(band.mean[0]), "ci95": [float(band.lower[0]),
                                            float(band.upper[0])], "per_seed": values}  # fmt: skip
    for base in (b for b in per if b != "diswm" and "diswm" in per):
        summary["diswm_vs"][base] = {
            key: list(probability_of_improvement(np.array(per["diswm"][key]), np.array(per[base][key])))
            for key in per["diswm"]
        }
    if "dreamer" in per:  # the budget check: how far DreamerV2 gets from random towards greedy
        lo, hi = refs["random"]["mean_return"], refs["greedy"]["mean_return"]
        reached = summary["agents"]["dreamer"]["mean_return"]["mean"]
        summary["dreamer_fraction_of_greedy"] = (reached - lo) / (hi - lo)
    summary["diagnostics_per_quarter"] = diagnostics(runs, args.steps)
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    (out / "summary.md").write_text(markdown(summary))
    plot(out, runs, args.steps)
    reconstructions(out, runs, args.steps)
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
    partial = "" if summary["complete"] else "**PARTIAL: not every seed has finished; nothing is read yet.** "
    lines = [f"{partial}{summary['steps']} env steps, colours switched train -> test at half; "
             f"seeds {summary['seeds']}", "",
             "| agent | first-half return | after-switch return | eval return (test) | eval success |",
             "|---|---|---|---|---|"]  # fmt: skip
    for name, m in summary["agents"].items():
        lines.append(f"| {name} | {fmt(m['first_half'], '.1f')} | {fmt(m['after_switch'], '.1f')} | "
                     f"{fmt(m['mean_return'], '.1f')} | {fmt(m['success_rate'], '.2f')} |")  # fmt: skip
    for name, ref in summary["references"].items():
        lines.append(f"| {name} controller | - | - | {ref['mean_return']:.1f} | "
                     f"{ref['success_rate']:.2f} |")
    if "dreamer_fraction_of_greedy" in summary:
        share = summary["dreamer_fraction_of_greedy"]
        lines += ["", f"DreamerV2 ends {share:.0%} of the way from random to greedy (eval, test colours)."]
    if summary["diswm_vs"]:
        lines += ["", "| P(DisWM > agent) | first-half | after-switch | eval return | eval success |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for base, pois in summary["diswm_vs"].items():
            cells = [f"{p[0]:.2f} [{p[1]:.2f}, {p[2]:.2f}] {verdict(p)}" for p in pois.values()]
            lines.append(f"| vs {base} | " + " | ".join(cells) + " |")
    lines += ["", "Diagnostics, mean over seeds per quarter of training:", "",
              "| agent | tag | 1st | 2nd | 3rd | 4th |", "|---|---|---|---|---|---|"]  # fmt: skip
    for name, tags in summary["diagnostics_per_quarter"].items():
        for tag, values in tags.items():
            lines.append(f"| {name} | {tag} | " + " | ".join(f"{v:.3g}" for v in values) + " |")
    return "\n".join(lines) + "\n"


def plot(out: Path, runs: dict[str, list[Path]], steps: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for i, (name, folders) in enumerate(runs.items()):
        for j, run in enumerate(folders):
            at, curve = episode_curve(run, window=1_000)
            ax.plot(at, curve, color=f"C{i}", alpha=0.7, label=name if j == 0 else None)
    ax.axvline(steps // 2, color="k", ls=":", label="colour switch")
    ax.set(xlabel="env steps", ylabel="episodic return (trailing 1000 steps)",
           title="reach: train colours, switched to test at half")  # fmt: skip
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "curves.png", dpi=100)
    plt.close(fig)


RECON_TAG = "world_model/reconstruction"


def reconstructions(out: Path, runs: dict[str, list[Path]], steps: int) -> None:
    """``reconstructions.png``: per agent (a row, its first finished seed), the world model's last
    logged grid before the colour switch and its last one (each: frames over reconstructions, as
    TensorBoard holds them), the diagnosis docs/diswm.md asks for."""
    from PIL import Image, ImageDraw

    rows = []
    for name, folders in runs.items():
        acc = scalars(folders[0])
        if RECON_TAG not in acc.Tags()["images"]:
            continue
        events = acc.Images(RECON_TAG)
        before = [e for e in events if e.step <= steps // 2]
        picks = [before[-1], events[-1]] if before else [events[-1]]
        grids = [Image.open(io.BytesIO(e.encoded_image_string)).convert("RGB") for e in picks]
        width = sum(g.width + 8 for g in grids)
        row = Image.new("RGB", (width, max(g.height for g in grids) + 12))
        draw, x = ImageDraw.Draw(row), 0
        for grid, event in zip(grids, picks, strict=True):
            draw.text((x, 0), f"{name} step {event.step}", fill="white")
            row.paste(grid, (x, 12))
            x += grid.width + 8
        rows.append(row)
    if rows:
        sheet = Image.new("RGB", (max(r.width for r in rows), sum(r.height for r in rows)))
        for i, row in enumerate(rows):
            sheet.paste(row, (0, sum(r.height for r in rows[:i])))
        sheet.save(out / "reconstructions.png")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", default="runs/transfer_switch")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(PLAN_SEEDS), help="seeds to run")
    parser.add_argument("--agents", nargs="+", default=list(AGENTS), choices=list(AGENTS))
    parser.add_argument("--steps", type=int, default=30_000, help="target env steps per run")
    parser.add_argument("--source-steps", type=int, default=22_000, help="env steps of the source run")
    parser.add_argument("--pretrain-updates", type=int, default=20_000, help="the official count")
    parser.add_argument("--parallel", type=int, default=2, help="runs at a time, one core each")
    parser.add_argument("--episodes", type=int, default=50, help="evaluation episodes per run")
    parser.add_argument("--analyse-only", action="store_true", help="skip training; analyse finished runs")
    parser.add_argument("--force", action="store_true", help="go on with a teacher that fails the probe")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.analyse_only:
        # DreamerV2 never reads the teacher: its runs need neither the teacher nor its probe gate.
        pretrained = teacher(out, args) if needs_teacher(args.agents) else None
        run_all(jobs(out, args, pretrained), args.parallel)
    analyse(out, args)


if __name__ == "__main__":
    main()
