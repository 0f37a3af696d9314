"""The ``rlkd`` command: train | resume | tune | eval | monitor | report | collect | pretrain | envs | tb.

User errors (bad ids, options, files) print one line ``error: ...`` on stderr and exit with 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rlkd.cli.train_options import Parser, parse_train
from rlkd.errors import UserError


# ------------------------------------------------------------------------------------------ train
def cmd_train(argv: Sequence[str]) -> None:
    from rlkd.api import run_training

    module, cfg, seeds, jobs = parse_train(argv)
    if seeds is not None:
        _train_seeds(argv, cfg, seeds, jobs)
        return
    cfg = module.finalize(cfg)  # values derived from inputs, e.g. a dataset's env id
    run_training(module, cfg)


def _train_seeds(argv: Sequence[str], cfg: Any, seeds: list[int], jobs: int) -> None:
    """One ``rlkd train`` per seed, each its own run folder, ``jobs`` at a time (child processes);
    ``cfg`` is the first seed's config, resolved (so bad options failed before any run)."""
    import subprocess
    import tempfile
    import time

    if cfg.run_dir:  # from --run-dir, a --config file or a preset
        raise UserError("several seeds make several run folders: drop run_dir (use --runs-root)")
    pending, running, failed = list(seeds), [], []
    while pending or running:
        while pending and len(running) < jobs:
            seed = pending.pop(0)
            # The last --seed and --jobs win: the child is one run of this seed.
            cmd = [sys.executable, "-m", "rlkd.cli", "train", *argv, "--seed", str(seed), "--jobs", "1"]
            # One run at a time shares the terminal; parallel runs write their output to a file each.
            log = None if jobs == 1 else tempfile.TemporaryFile("w+")  # noqa: SIM115 - closed in _finished
            running.append((seed, subprocess.Popen(cmd, stdout=log, stderr=log), log))
            print(f"seed {seed}: started", file=sys.stderr, flush=True)
        for item in [r for r in running if r[1].poll() is not None]:
            running.remove(item)
            if not _finished(*item):
                failed.append(item[0])
        time.sleep(0.1)
    if failed:
        raise UserError(f"seeds {', '.join(map(str, failed))} of {len(seeds)} failed (their lines are above)")


def _finished(seed: int, proc: Any, log: Any) -> bool:
    """Report a finished seed (with its last output line when it ran in parallel); True if it succeeded."""
    last = ""
    if log is not None:
        log.seek(0)
        lines = log.read().strip().splitlines()
        last = lines[-1] if lines else ""
        log.close()
    ok = proc.returncode == 0
    status = (last or "done") if ok else f"failed (exit {proc.returncode})" + (f": {last}" if last else "")
    print(f"seed {seed}: {status}", file=sys.stderr, flush=True)
    return ok


def cmd_resume(args: argparse.Namespace) -> None:
    from rlkd.agents import agent_module
    from rlkd.core import distributed
    from rlkd.core.config import from_dict
    from rlkd.core.run import keep_freed_memory

    made: list[Any] = []
    # Rank 0 (or the one process) opens, locks and checks the folder; other ranks get its config
    # and checkpoint (no shared file system needed) or its error.
    config, checkpoint = distributed.share(lambda: _open_resume(args, made))
    run = made[0] if made else None
    try:
        module = agent_module(str(config.get("agent", "ppo")))
        cfg = from_dict(module.CONFIG, config, "config.yaml")
        if run is not None and cfg.nproc > 1 and not distributed.launched():
            run.release()  # the ranks take the folder's lock themselves
            total = [] if args.total_steps is None else ["--total-steps", str(args.total_steps)]
            what = f"rlkd resume {run.path} continues from its last checkpoint"
            distributed.launch(cfg.nproc, ["resume", str(run.path), *total], what)
            return
        keep_freed_memory()
        module.train(cfg, run, checkpoint)
    finally:
        if run is not None:
            run.release()


def _open_resume(args: argparse.Namespace, made: list[Any]) -> tuple[dict[str, Any], Any]:
    """Open, lock and check the run folder of ``rlkd resume``; returns (config, checkpoint or None)
    and puts the locked :class:`Run` in ``made``."""
    import dataclasses

    from rlkd.agents import agent_module
    from rlkd.api import check_world
    from rlkd.core.config import from_dict, read_yaml, to_dict
    from rlkd.core.run import Run

    run = Run.open(args.run_dir)
    run.lock("rlkd resume")
    try:
        run.config = read_yaml(run.path / "config.yaml")  # as it is now that no other writer can change it
        module = agent_module(str(run.config.get("agent", "ppo")))
        cfg = from_dict(module.CONFIG, run.config, str(run.path / "config.yaml"))
        # A run stopped before its first checkpoint starts again from step 0 in its own folder.
        checkpoint = run.load_checkpoint("latest") if run.checkpoint_steps() else None
        step = int(checkpoint["step"]) if checkpoint else 0
        if args.total_steps is not None:
            if args.total_steps <= 0:
                raise UserError(f"--total-steps must be positive, got {args.total_steps}")
            cfg = dataclasses.replace(cfg, total_steps=args.total_steps)
        if step >= cfg.total_steps:
            raise UserError(
                f"run {run.path} already reached step {step} of {cfg.total_steps}; "
                "pass --total-steps N with a larger N to train further"
            )
        check_world(module, cfg)
    except BaseException:
        run.abandon()
        raise
    # Scalars up to and including the checkpoint's step were logged before it was written;
    # anything later is superseded by the resumed run (TensorBoard hides purged points).
    run.config, run.purge_step = to_dict(cfg), step + (1 if checkpoint else 0)
    # config.yaml is rewritten only once the agent has restored the checkpoint (Run.start).
    how = f"from step {step}" if checkpoint else "from step 0: it stopped before its first checkpoint"
    run.on_start(f"resuming {run.path} {how}", save=cfg)
    made.append(run)
    return run.config, checkpoint


# ------------------------------------------------------------------------------------------ envs
def cmd_envs(args: argparse.Namespace) -> None:
    from rlkd.envs import envpool_ids, gymnasium_ids, make_vec, registered_id, resolve_backend

    if args.action == "list":
        gym_ids = gymnasium_ids()
        rlkd_ids = [i for i in gym_ids if i.startswith("rlkd/")]
        print(f"# rlkd ({len(rlkd_ids)})")
        print("\n".join(rlkd_ids))
        print(f"\n# envpool ({len(envpool_ids())})")
        print("\n".join(envpool_ids()))
        others = [i for i in gym_ids if not i.startswith("rlkd/")]
        print(f"\n# gymnasium ({len(others)})")
        print("\n".join(others))
        return
    if not args.env_id:
        raise UserError("`rlkd envs show` needs an env id, e.g. `rlkd envs show CartPole-v1`")
    env_id = registered_id(args.env_id)  # every id `rlkd train` takes: module:Env-v0, spec.yaml
    backend = resolve_backend(env_id, args.backend)
    envs = make_vec(env_id, 1, 0, backend)
    print(f"id:                {env_id}")
    print(f"backend:           {backend}")
    print(f"observation space: {envs.single_observation_space}")
    print(f"action space:      {envs.single_action_space}")
    print(f"autoreset mode:    {envs.metadata.get('autoreset_mode')}")
    envs.close()


# ------------------------------------------------------------------------------------------ others
def cmd_eval(args: argparse.Namespace) -> None:
    from rlkd.analysis.evaluate import evaluate
    from rlkd.core.config import check_device

    check_device(args.device)
    result = evaluate(
        Path(args.run_dir),
        checkpoint=args.checkpoint,
        episodes=args.episodes,
        deterministic=args.deterministic,
        video=Path(args.video) if args.video else None,
        device=args.device,
    )
    for key, value in result.items():
        print(f"{key}: {value}")
    if args.monitor:
        from rlkd.monitor.evaluation import evaluate as evaluate_monitor

        _print_monitor(evaluate_monitor(Path(args.run_dir), args.episodes))


def cmd_monitor(args: argparse.Namespace) -> None:
    from rlkd.core.config import read_yaml_text
    from rlkd.monitor import MonitorConfig
    from rlkd.monitor.evaluation import evaluate
    from rlkd.monitor.workflow import calibrate

    kwargs = read_yaml_text(args.env_kwargs, "--env-kwargs") if args.env_kwargs else None
    if args.action == "calibrate":
        cfg = MonitorConfig(alpha=args.alpha, window=args.window, novelty=args.novelty, updates=args.updates,
                            fit_fraction=args.fit_fraction, deterministic=not args.stochastic,
                            features=args.features, skip=args.skip, full_windows=args.full_windows,
                            statistic=args.statistic)  # fmt: skip
        record = calibrate(Path(args.run_dir), cfg, args.episodes, args.checkpoint, args.env_id, kwargs)
        fit, cal = record["fit_episodes"], record["calibration_episodes"]
        print(f"kept {record['successful']} of {record['episodes']} episodes: {fit} fit the scorers, "
              f"{cal} set the thresholds (alpha {cfg.alpha})")  # fmt: skip
        for name, stats in record["scores"].items():
            print(f"threshold {name}: {stats['threshold']:.4g}")
        print(f"wrote {Path(record['run']) / 'monitor'}")
        return
    _print_monitor(
        evaluate(Path(args.run_dir), args.episodes, args.env_id, kwargs, args.label, args.seed, args.horizon)
    )


def _print_monitor(record: dict[str, Any]) -> None:
    """The rules' table of a monitor evaluation, and where its files are."""
    rate = record["success_rate"]
    print(f"{record['env_id']} {record['env_kwargs'] or ''}: {record['episodes']} episodes, "
          f"success rate {'n/a' if rate is None else f'{rate:.2f}'}, alpha {record['alpha']}")  # fmt: skip
    print(f"{'rule':<12} {'accuracy':>16} {'TPR':>16} {'FPR':>16} {'lead (median)':>14}")
    cell = lambda m: "n/a" if m is None else f"{m['value']:.2f} [{m['ci95'][0]:.2f},{m['ci95'][1]:.2f}]"  # noqa: E731
    for rule, m in record["rules"].items():
        lead = (m.get("lead_time") or {}).get("median")
        chance = (m.get("chance") or {}).get("accuracy")
        print(f"{rule:<12} {cell(m.get('accuracy')):>16} {cell(m.get('tpr')):>16} {cell(m.get('fpr')):>16} "
              f"{'-' if lead is None else f'{lead:.0f}':>14}"
              f"{'' if chance is None else f'  (random at its rate: accuracy {chance:.2f})'}")  # fmt: skip
    ranking = record.get("scores")
    if ranking:
        k, ap, early = record["horizon"], ranking["chance"]["ap"], ranking["chance"]["early_ap"]
        print(f"\nthreshold-free (chance: AUROC 0.50, AP {ap:.2f}, early AP {early:.3f}); "
              f"early: the score at step t for a failure within {k} steps")  # fmt: skip
        print(f"{'score':<12} {'AUROC':>16} {'AP':>16} {'early AUROC':>16} {'early AP':>16}")
        for name, m in ranking.items():
            if name != "chance":
                print(f"{name:<12} {cell(m['auroc']):>16} {cell(m['ap']):>16} {cell(m['early_auroc']):>16} "
                      f"{cell(m['early_ap']):>16}")  # fmt: skip
    folder = Path(record["run"]) / "monitor" / "eval"
    print(f"wrote {folder / record['label']}.json, .png and .npz")


def cmd_report(args: argparse.Namespace) -> None:
    from rlkd.analysis import report

    result = report(
        args.runs,
        out=Path(args.out) if args.out else None,
        metrics=args.metric or None,
        group_by=None if args.group_by == "auto" else [g for g in args.group_by.split(",") if g],
        per_seed=args.per_seed,
        smooth=args.smooth,
    )
    print(result.text)


def cmd_tb(args: argparse.Namespace) -> None:
    from rlkd.cli.tb import serve

    serve(Path(args.run_dir))


def cmd_collect(args: argparse.Namespace) -> None:
    from rlkd.core.config import read_yaml_text
    from rlkd.world_model.datasets import collect, collect_from_run, read_manifest

    if args.from_run:
        if args.env_id or args.episodes is not None or args.format != "npz":
            raise UserError("--from-run writes the run's own episodes: drop --env, --episodes and --format")
        out = collect_from_run(Path(args.from_run), Path(args.out))
        print(f"wrote {len(read_manifest(out)['episodes'])} episodes of {args.from_run}'s replay to {out}")
        return
    if not args.env_id or args.episodes is None:
        raise UserError("collect needs --env ID and --episodes N (or --from-run RUN_DIR)")
    env_kwargs = read_yaml_text(args.env_kwargs, "--env-kwargs") if args.env_kwargs else {}
    out = collect(args.env_id, args.episodes, Path(args.out), policy=args.policy, seed=args.seed,
                  fmt=args.format, **env_kwargs)  # fmt: skip
    print(f"wrote {args.episodes} episodes to {out}")


def cmd_tune(argv: Sequence[str]) -> None:
    """`rlkd tune [train options] --trials N [--storage URL] [--study NAME] [--metric TAG] ...`."""
    from rlkd.cli.tune import tune

    parser = Parser(prog="rlkd tune", description="Hyperparameter search on Optuna (see rlkd.cli.tune).")
    parser.add_argument("--trials", type=int, required=True, help="trials this process runs")
    parser.add_argument(
        "--storage", default=None, help="Optuna storage URL shared by workers (sqlite:///x.db)"
    )
    parser.add_argument("--study", default="rlkd", help="study name (workers with one name share it)")
    parser.add_argument("--metric", default="charts/episodic_return", help="tag the trials maximise")
    parser.add_argument("--average", type=int, default=5, help="the objective: mean of the last N logs")
    parser.add_argument("--out", default=None, help="best config YAML (default: in the study's folder)")
    args, train_argv = parser.parse_known_args(argv)
    study, path = tune(train_argv, args.trials, args.storage, args.study, args.metric, args.average,
                       Path(args.out) if args.out else None)  # fmt: skip
    best = study.best_trial
    print(f"best: trial {best.number}, {args.metric} = {best.value:.4g}, {best.params}")
    print(f"wrote {path} (rlkd train --config {path})")


def cmd_pretrain(argv: Sequence[str]) -> None:
    """`rlkd pretrain` is `rlkd train --agent pretrain` (its options are PretrainConfig's fields)."""
    cmd_train(["--agent", "pretrain", *argv])


def _monitor_parser(sub: Any) -> None:
    p = sub.add_parser(
        "monitor", help="run-time failure prediction: calibrate, then eval (rlkd.monitor)",
        description="Run-time failure prediction (FIPER): calibrate on successful rollouts, then eval on "
        "any env. Measured (bench/results/monitor_candidates, docs/monitor.md): the episode mean of the "
        "policy-embedding novelty ranks failures above successes with AUROC 0.86 on AGV shifts and 0.78 "
        "for a pixel Dreamer in unseen colours (the value head: 0.37, 0.60). The step-wise alarms keep "
        "in-distribution false alarms within --alpha but raise one on only 14-39% of failed episodes "
        "(and 5-15% of successful ones) in those tests.",
    )  # fmt: skip
    p.add_argument("action", choices=["calibrate", "eval"])
    p.add_argument("run_dir")
    p.add_argument("--env", dest="env_id", default=None, help="another env with the run's spaces")
    p.add_argument("--env-kwargs", default=None, metavar="YAML", help="added to the run's")
    p.add_argument("--episodes", type=int, default=100)
    p.add_argument("--alpha", type=float, default=0.05, help="calibrate: false-alarm bound on successes")
    p.add_argument("--window", type=int, default=5, help="calibrate: steps each score is averaged over")
    p.add_argument("--novelty", choices=["rnd", "rdd"], default="rnd", help="calibrate: distillation method")
    p.add_argument("--fit-fraction", type=float, default=0.5, help="calibrate: episodes that fit the scorers")
    p.add_argument("--updates", type=int, default=1_000, help="calibrate: optimiser steps of each scorer")
    p.add_argument("--checkpoint", default="latest", help="calibrate: latest, best or a step number")
    p.add_argument("--stochastic", action="store_true", help="calibrate: sample actions (default: the mode)")
    p.add_argument("--features", default="policy",
                   help="calibrate: what novelty reads: policy (the heads' input), obs (normalised), layer1, "
                        "layer2, ... (PPO hidden layers), all (obs + layers), deter, stoch (Dreamer state)")
    p.add_argument("--skip", type=int, default=0, help="calibrate: first steps of an episode left unscored")
    p.add_argument("--full-windows", action="store_true", help="calibrate: score only full windows")
    p.add_argument("--statistic", choices=["mean", "max"], default="mean",
                   help="calibrate: episode statistic the AUROC ranks by (alarms read the max); mean "
                        "ranked failures best in bench/results/monitor_candidates")
    p.add_argument("--horizon", type=int, default=20,
                   help="eval: early-warning AUROC: the score at step t for a failure within this many steps")
    p.add_argument("--label", default=None, help="eval: name of the output files (default: from the env)")
    p.add_argument("--seed", type=int, default=0, help="eval: added to the evaluation seed")


def _main_parser() -> Parser:
    parser = Parser(prog="rlkd", description="RL agents built on distillation (RND, RDD, DisWM).")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.add_parser("train", help="train an agent (rlkd train --help lists every option)", add_help=False)
    sub.add_parser("pretrain", help="offline action-free pretraining on videos (DisWM)", add_help=False)
    sub.add_parser("tune", help="hyperparameter search on Optuna (rlkd tune --help)", add_help=False)
    p = sub.add_parser("resume", help="continue a run from its latest checkpoint")
    p.add_argument("run_dir")
    p.add_argument(
        "--total-steps",
        type=int,
        default=None,
        help="new total, to train past the original budget (an annealed LR follows the new schedule)",
    )
    p = sub.add_parser("eval", help="evaluate a run's checkpoint")
    p.add_argument("run_dir")
    p.add_argument("--checkpoint", default="latest", help="latest, best or a step number")
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--deterministic", action="store_true", help="take the most likely action")
    p.add_argument("--video", default=None, metavar="FILE.gif", help="write a GIF of the first episode")
    p.add_argument("--device", default="cpu")
    p.add_argument("--monitor", action="store_true", help="also judge the run's monitor")
    _monitor_parser(sub)
    p = sub.add_parser("report", help="tables, learning-curve PNGs and CSVs from TensorBoard event files")
    p.add_argument("runs", nargs="+", metavar="RUN_DIR_OR_GLOB")
    p.add_argument("--out", default=None, help="output folder (default: report/ next to the runs)")
    p.add_argument("--metric", action="append", default=None, help="tag to report (repeatable)")
    p.add_argument(
        "--group-by", default="auto",
        help="config fields that define a group (default auto: every field that differs but the seed)",
    )  # fmt: skip
    p.add_argument("--per-seed", action="store_true", help="also draw each run's curve")
    p.add_argument("--smooth", type=int, default=1, help="moving average over N logged points (plots only)")
    p = sub.add_parser("collect", help="record episodes as a video dataset (npz or mp4)")
    p.add_argument("--env", dest="env_id", default=None, help="pixel env to roll out")
    p.add_argument("--episodes", type=int, default=None, help="episodes to write")
    p.add_argument("--out", required=True)
    p.add_argument("--policy", default="random", help="random or a RUN_DIR")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--env-kwargs", default=None, metavar="YAML", help='e.g. "{color_set: test}"')
    p.add_argument("--format", choices=["npz", "mp4"], default="npz",
                   help="npz episodes + manifest, or one mp4 per episode (frames only)")  # fmt: skip
    p.add_argument("--from-run", default=None, metavar="RUN_DIR",
                   help="write the finished episodes a Dreamer/DisWM run keeps in its replay (the official "
                   "teacher data, train_eps) instead of rolling out a policy")  # fmt: skip
    p = sub.add_parser("envs", help="list env ids or show one env's spaces")
    p.add_argument("action", nargs="?", choices=["list", "show"], default="list")
    p.add_argument("env_id", nargs="?")
    p.add_argument("--backend", default="auto")
    p = sub.add_parser("tb", help="start TensorBoard on the runs folder")
    p.add_argument("run_dir", nargs="?", default="runs")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rlkd`` console script."""
    from rlkd.core import distributed

    argv = list(sys.argv[1:] if argv is None else argv)
    world = distributed.init()  # a rank of a torchrun job joins it; otherwise rank 0 of 1
    try:
        if not argv:
            argv = ["train"]
        if argv[0] == "train":
            cmd_train(argv[1:])
            return 0
        if argv[0] == "pretrain":
            cmd_pretrain(argv[1:])
            return 0
        if argv[0] == "tune":
            cmd_tune(argv[1:])
            return 0
        args = _main_parser().parse_args(argv)
        handlers = {
            "resume": cmd_resume,
            "eval": cmd_eval,
            "report": cmd_report,
            "collect": cmd_collect,
            "monitor": cmd_monitor,
            "envs": cmd_envs,
            "tb": cmd_tb,
        }
        handlers[args.command](args)
    except distributed.ReplicatedError:
        return 2  # rank 0 printed it
    except UserError as exc:
        print(f"error: {'' if world.size == 1 else f'rank {world.rank}: '}{exc}", file=sys.stderr)
        return 3 if isinstance(exc, distributed.PeerLost) else 2
    except OSError as exc:  # disk full, permissions, a path that vanished: one line, as above
        from rlkd.core.paths import describe_os_error

        print(f"error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the latest checkpoint is kept (rlkd resume RUN_DIR continues)", file=sys.stderr)
        return 130
    finally:
        distributed.close()  # gloo's threads abort a process that exits still in the group
    return 0


if __name__ == "__main__":
    sys.exit(main())
