"""Tests of ``rlkd report``: event files written with the real SummaryWriter (through ``Run``)."""

from __future__ import annotations

import csv
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from rlkd.analysis import bootstrap_band, confidence_band, load_run, report, resample
from rlkd.core.run import Run
from rlkd.errors import UserError


def make_run(
    root: Path,
    name: str,
    config: dict,
    scalars: dict[str, Sequence[tuple[int, float]]],
    purge_step: int | None = None,
    walltime: Callable[[int, int], float] | None = None,
) -> Path:
    """Write one run folder (config.yaml + events) the way ``rlkd/core/run.py`` does.

    ``walltime(file_start, step)`` sets each point's wall time (``file_start``: the event file's
    creation second taken from its name); None uses the real clock.
    """
    path = root / name
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.yaml").write_text(yaml.safe_dump(config))
    run = Run(path, config, purge_step=purge_step)
    before = set(path.glob("events.out.tfevents.*"))
    run.writer  # noqa: B018  (opens the event file now, so its name carries this session's start)
    (created,) = set(path.glob("events.out.tfevents.*")) - before
    file_start = int(created.name.split(".")[3])
    for tag, points in scalars.items():
        for step, value in points:
            wall = None if walltime is None else walltime(file_start, step)
            run.writer.add_scalar(tag, value, step, walltime=wall)
    run.close()
    return path


def ppo(seed: int, intrinsic: str = "none", env: str = "CartPole-v1") -> dict:
    return {
        "agent": "ppo",
        "env_id": env,
        "seed": seed,
        "intrinsic": intrinsic,
        "num_envs": 4,
        "total_steps": 400,
    }


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with open(path, newline="") as fh:
        rows = list(csv.reader(fh))
    return rows[0], rows[1:]


def test_report_exact_values_pooled_seeds_png_and_csv(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    # Values are exact in float32 (event files store float32), so they must come back exactly.
    make_run(
        runs,
        "a",
        ppo(1),
        {
            "charts/episodic_return": [(100, 1.0), (200, 2.0), (300, 3.0), (400, 4.0)],
            "charts/SPS": [(200, 50.0), (400, 70.0)],
        },
    )
    make_run(
        runs, "b", ppo(2), {"charts/episodic_return": [(200, 2.0), (400, 6.0)], "charts/SPS": [(400, 90.0)]}
    )
    make_run(runs, "c", ppo(1, "rnd"), {"charts/episodic_return": [(200, 7.5), (300, 9.25), (400, 8.0)]})
    dreamer = {"agent": "dreamer", "env_id": "CartPole-v1", "seed": 1}  # no `intrinsic` field
    make_run(runs, "d", dreamer, {"charts/episodic_return": [(400, -1.5)]})

    rep = report([str(runs / "*")], points=5)

    assert [r.name for r in rep.rows] == [
        "CartPole-v1 ppo none",
        "CartPole-v1 ppo rnd",
        "CartPole-v1 dreamer -",
    ]
    assert rep.metrics == ["charts/episodic_return", "charts/SPS"]
    assert rep.out == runs / "report"
    pooled = rep.row("CartPole-v1 ppo none")
    assert pooled.seeds == 2 and pooled.steps_min == 400 and pooled.steps_max == 400
    ret = pooled.metrics["charts/episodic_return"]
    assert ret.finals == [4.0, 6.0] and ret.bests == [4.0, 6.0]
    assert ret.final_mean == 5.0 and ret.final_std == pytest.approx(math.sqrt(2.0))
    assert pooled.sps == pytest.approx((70 + 90) / 2)  # mean over runs of each run's last (cumulative) SPS
    single = rep.row("CartPole-v1 ppo rnd").metrics["charts/episodic_return"]
    assert single.finals == [8.0] and single.bests == [9.25] and math.isnan(single.final_std)
    assert "CartPole-v1 ppo none" in rep.text and "5 ± 1.41" in rep.text

    # CSV: one grid from 200 (first step every run of every group has) to 400 in 5 points.
    csv_path = runs / "report" / "charts_episodic_return.csv"
    assert csv_path in rep.files
    header, rows = read_csv(csv_path)
    assert header[:6] == ["step"] + [
        f"CartPole-v1 ppo none {k}" for k in ("mean", "std", "lower", "upper", "n")
    ]
    table = np.array([[float(c) if c else np.nan for c in row] for row in rows])
    np.testing.assert_allclose(table[:, 0], [200, 250, 300, 350, 400])
    # run a at the grid: 2, 2.5, 3, 3.5, 4; run b (200->2, 400->6): 2, 3, 4, 5, 6.
    a, b = np.array([2, 2.5, 3, 3.5, 4]), np.array([2, 3, 4, 5, 6.0])
    mean, std = (a + b) / 2, np.abs(a - b) / math.sqrt(2)  # sample std (ddof=1) of two numbers
    np.testing.assert_allclose(table[:, 1], mean)
    np.testing.assert_allclose(table[:, 2], std)
    assert (table[1:, 2] > 0).all()  # the seeds differ, so the band has width
    # 95% percentile bootstrap over two runs: exactly their min and max at every step.
    np.testing.assert_allclose(table[:, 3], np.minimum(a, b), rtol=1e-6)
    np.testing.assert_allclose(table[:, 4], np.maximum(a, b), rtol=1e-6)
    np.testing.assert_allclose(table[:, 5], 2)
    # The one-seed group: mean is the run itself (7.5, 8.375, 9.25, 8.625, 8), no std and no band.
    np.testing.assert_allclose(table[:, 6], [7.5, 8.375, 9.25, 8.625, 8.0])
    assert np.isnan(table[:, 7:10]).all() and (table[:, 10] == 1).all()
    # The dreamer group has data only at step 400 (no interpolation outside a run's range).
    assert np.isnan(table[:4, 11]).all() and table[4, 11] == -1.5

    for tag in ("charts_episodic_return", "charts_SPS"):
        for axis in ("steps", "walltime"):
            png = runs / "report" / f"{tag}_{axis}.png"
            assert png in rep.files
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            with Image.open(png) as im:
                im.verify()
            with Image.open(png) as im:
                assert im.width >= 600 and im.height >= 400
            assert png.stat().st_size > 10_000  # a real plot, not an empty canvas

    _, summary = read_csv(runs / "report" / "summary.csv")
    assert [r[0] for r in summary] == [r.name for r in rep.rows]


def test_resample_matches_hand_computation() -> None:
    # Run 1 logged every 100 steps, run 2 every 150 steps from step 50.
    run1 = (np.array([0, 100, 200, 300, 400]), np.array([0.0, 1.0, 4.0, 9.0, 16.0]))
    run2 = (np.array([50, 200, 350]), np.array([2.0, 5.0, 8.0]))
    values = resample([run1, run2], np.array([0.0, 150.0, 250.0, 400.0]))
    # run1: 0 -> 0; 150 -> (1+4)/2 = 2.5; 250 -> (4+9)/2 = 6.5; 400 -> 16
    # run2: 0 and 400 lie outside it -> no data; 150 -> 2 + (100/150)*3 = 4; 250 -> 5 + (50/150)*3 = 6
    np.testing.assert_allclose(values, [[0.0, 2.5, 6.5, 16.0], [np.nan, 4.0, 6.0, np.nan]])


def test_confidence_band_uses_student_t() -> None:
    values = np.array([[1.0, 2.0], [3.0, 2.0], [5.0, 2.0]])
    band = confidence_band(values)
    # column 0: mean 3, s = 2, half = t(0.975, 2) * 2 / sqrt(3) = 4.3027 * 1.1547 = 4.9683
    np.testing.assert_allclose(band.mean, [3.0, 2.0])
    np.testing.assert_allclose(band.std, [2.0, 0.0])
    np.testing.assert_allclose(band.upper - band.mean, [4.30265 * 2 / math.sqrt(3), 0.0], rtol=1e-5)
    np.testing.assert_array_equal(band.n, [3, 3])


def test_bootstrap_band_stays_inside_the_runs_values() -> None:
    # Two runs: the bootstrap means are a, (a+b)/2 or b with probabilities 1/4, 1/2, 1/4, so the
    # 2.5% and 97.5% percentiles are exactly min and max (a t interval at n = 2 is 12.7 s/sqrt(2) wide).
    values = np.array([[0.0, 5.0, 1.0, np.nan], [10.0, 5.0, np.nan, np.nan]])
    band = bootstrap_band(values)
    np.testing.assert_allclose(band.lower[:2], [0.0, 5.0])
    np.testing.assert_allclose(band.upper[:2], [10.0, 5.0])
    assert np.isnan(band.lower[2:]).all() and band.n.tolist() == [2, 2, 1, 0]
    assert confidence_band(values).lower[0] < -50  # what the t band draws for the same runs
    rng = np.random.default_rng(1)
    many = rng.normal(size=(7, 30))
    wide = bootstrap_band(many)
    assert (wide.lower >= many.min(0)).all() and (wide.upper <= many.max(0)).all()
    assert (wide.lower < wide.mean).all() and (wide.mean < wide.upper).all()
    np.testing.assert_array_equal(bootstrap_band(many).lower, wide.lower)  # fixed seed: reproducible


def test_resume_with_purge_step_does_not_duplicate_steps(tmp_path: Path) -> None:
    # Session 1 logs steps 100..500 and stops; it is resumed from its step-200 checkpoint, so the
    # new writer purges steps >= 300 and logs 300..600 again (values +100 to tell them apart).
    def session1_wall(_start: int, step: int) -> float:
        return 1_000_000.0 + step / 100  # step 100 at t0, 200 at t0 + 1, ...

    def session2_wall(start: int, step: int) -> float:
        return start + step / 100 - 1  # step 300 two seconds after the new session's file starts

    first = {"charts/episodic_return": [(s, s / 100) for s in range(100, 600, 100)]}
    second = {"charts/episodic_return": [(s, s / 100 + 100) for s in range(300, 700, 100)]}
    path = make_run(tmp_path, "r", ppo(1), first, walltime=session1_wall)
    make_run(tmp_path, "r", ppo(1), second, purge_step=300, walltime=session2_wall)
    assert len(list(path.glob("events.out.tfevents.*"))) == 2

    run = load_run(path)
    curve = run.scalars["charts/episodic_return"]
    np.testing.assert_array_equal(curve.steps, [100, 200, 300, 400, 500, 600])
    np.testing.assert_array_equal(curve.values, [1, 2, 103, 104, 105, 106])
    # Active time: 0 and 1 s in session 1; the pause until session 2's file started is not counted,
    # and session 2 logs step 300 two seconds after it started: 1 + 2 = 3, then 4, 5, 6.
    np.testing.assert_allclose(curve.wall, [0, 1, 3, 4, 5, 6])
    assert run.wall_time_s == pytest.approx(6.0)
    rep = report([path], out=tmp_path / "out")
    assert rep.row("CartPole-v1 ppo none").metrics["charts/episodic_return"].finals == [106.0]


def test_duplicate_steps_are_averaged(tmp_path: Path) -> None:
    # Two episodes ending in the same vector step are logged at the same step.
    path = make_run(tmp_path, "r", ppo(1), {"charts/episodic_return": [(100, 1.0), (100, 3.0), (200, 4.0)]})
    curve = load_run(path).scalars["charts/episodic_return"]
    np.testing.assert_array_equal(curve.steps, [100, 200])
    np.testing.assert_array_equal(curve.values, [2.0, 4.0])


def test_run_being_written_with_truncated_last_record(tmp_path: Path) -> None:
    path = make_run(tmp_path, "r", ppo(1), {"charts/episodic_return": [(s, float(s)) for s in (10, 20, 30)]})
    (events,) = path.glob("events.out.tfevents.*")
    data = events.read_bytes()
    events.write_bytes(data[:-5])  # the writer was interrupted in the middle of the last record
    rep = report([path], out=tmp_path / "out")
    row = rep.row("CartPole-v1 ppo none")
    assert row.steps_max == 20
    assert row.metrics["charts/episodic_return"].finals == [20.0]


def test_folder_without_event_files_is_a_user_error(tmp_path: Path) -> None:
    empty = tmp_path / "CartPole-v1__ppo__1__20250101-000000"
    empty.mkdir()
    (empty / "config.yaml").write_text(yaml.safe_dump(ppo(1)))
    with pytest.raises(UserError, match=f"{empty}.*no TensorBoard event files"):
        report([str(empty)])
    with pytest.raises(UserError, match="does not exist"):
        report([str(tmp_path / "missing")])
    with pytest.raises(UserError, match="no run folder with TensorBoard event files matches"):
        report([str(tmp_path / "*")])


def test_unknown_metric_lists_present_tags(tmp_path: Path) -> None:
    path = make_run(
        tmp_path, "r", ppo(1), {"charts/episodic_return": [(1, 1.0)], "losses/pg_loss": [(1, 0.5)]}
    )
    with pytest.raises(UserError) as info:
        report([path], metrics=["intrinsic/bonus"])
    msg = str(info.value)
    assert "intrinsic/bonus" in msg and "charts/episodic_return" in msg and "losses/pg_loss" in msg
    assert "\n" not in msg
    # A unique suffix names the tag; best of a loss is its minimum.
    rep = report([path], metrics=["pg_loss"], out=tmp_path / "out")
    assert rep.metrics == ["losses/pg_loss"]


def test_default_metrics_missing_lists_present_tags(tmp_path: Path) -> None:
    path = make_run(tmp_path, "r", ppo(1), {"world_model/kl": [(1, 1.0)]})
    with pytest.raises(UserError, match="tags present: world_model/kl"):
        report([path])


def test_loss_best_is_minimum_and_runs_root_expands(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    make_run(runs, "a", ppo(1), {"losses/value_loss": [(1, 3.0), (2, 0.5), (3, 1.0)]})
    make_run(runs, "b", ppo(2), {"losses/value_loss": [(1, 2.0), (2, 1.5), (3, 0.25)]})
    rep = report([runs], metrics=["losses/value_loss"])  # a folder of run folders
    m = rep.row("CartPole-v1 ppo none").metrics["losses/value_loss"]
    assert m.bests == [0.5, 0.25] and m.finals == [1.0, 0.25]
    assert rep.out == runs / "report"


def test_report_on_real_ppo_runs_reads_back_logged_values(tmp_path: Path) -> None:
    from rlkd.cli import main
    from tests.helpers import read_scalars

    for seed in (1, 2):
        argv = ["train", "--preset", "debug", "--seed", str(seed), "--run-dir", str(tmp_path / f"s{seed}")]
        assert main(argv) == 0
    rep = report([str(tmp_path / "s*")], out=tmp_path / "out", metrics=["charts/episodic_return"])
    (row,) = rep.rows  # two seeds of one (env, agent, intrinsic) group
    assert row.seeds == 2 and row.fields["env_id"] == "CartPole-v1" and row.fields["intrinsic"] == "none"
    logged = [read_scalars(tmp_path / f"s{seed}")["charts/episodic_return"] for seed in (1, 2)]
    summary = row.metrics["charts/episodic_return"]
    assert sorted(summary.finals) == sorted(curve[-1][1] for curve in logged)
    assert sorted(summary.bests) == sorted(max(v for _, v in curve) for curve in logged)
    assert row.steps_max == 512
    assert (tmp_path / "out" / "charts_episodic_return_steps.png").stat().st_size > 10_000


def test_runs_differing_in_a_hyperparameter_preset_or_budget_are_never_pooled(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    ret = "charts/episodic_return"
    base = {"learning_rate": 3e-4, "preset": "debug"}
    make_run(runs, "a1", {**ppo(1), **base, "run_dir": "x1"}, {ret: [(400, 1.0)]})
    make_run(runs, "a2", {**ppo(2), **base, "run_dir": "x2"}, {ret: [(400, 3.0)]})
    make_run(runs, "b1", {**ppo(1), **base, "learning_rate": 1e-3}, {ret: [(400, 5.0)]})
    make_run(runs, "c1", {**ppo(1), **base, "preset": "classic", "total_steps": 800}, {ret: [(800, 7.0)]})
    rep = report([str(runs)], metrics=[ret])
    seeds = {r.name: (r.seeds, r.metrics[ret].final_mean) for r in rep.rows}
    assert seeds == {
        "CartPole-v1 ppo none 0.0003 debug 400": (2, 2.0),  # only seed and run folder differ: pooled
        "CartPole-v1 ppo none 0.001 debug 400": (1, 5.0),
        "CartPole-v1 ppo none 0.0003 classic 800": (1, 7.0),
    }
    assert rep.text.startswith("groups by: env_id, agent, intrinsic, learning_rate, preset, total_steps")


def test_probability_of_improvement_and_smoothing_by_hand() -> None:
    from rlkd.analysis.numerics import probability_of_improvement
    from rlkd.analysis.output import _smoothed

    assert probability_of_improvement(np.array([1.0, 2, 3]), np.array([0.0, 0.5, 0.7]))[0] == 1.0
    assert probability_of_improvement(np.array([1.0, 2]), np.array([1.0, 2]))[0] == 0.5  # ties count half
    # x = (3, 1) over y = (2, 2.5): pairs (3>2, 3>2.5, 1<2, 1<2.5) -> 2 of 4.
    p, lo, hi = probability_of_improvement(np.array([3.0, 1.0]), np.array([2.0, 2.5]))
    assert p == 0.5 and 0.0 <= lo <= p <= hi <= 1.0
    assert np.isnan(probability_of_improvement(np.array([5.0]), np.array([1.0, 2.0]))[1])
    np.testing.assert_allclose(_smoothed(np.array([1.0, 2, 3, 4]), 2), [1.0, 1.5, 2.5, 3.5])
    from rlkd.analysis.numerics import iqm_interval

    # IQM of 8 runs drops 2 at each end: mean(3, 4, 5, 6); the outlier 100 does not move it.
    iqm, lo, hi = iqm_interval(np.array([1.0, 2, 3, 4, 100, 5, 6, 7]))
    assert iqm == 4.5 and lo <= iqm <= hi


def test_report_writes_profiles_and_pairwise_improvement(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    for seed, (a, b) in enumerate([(1.0, 4.0), (2.0, 5.0)], start=1):
        make_run(runs, f"a{seed}", ppo(seed), {"charts/episodic_return": [(100, 0.0), (200, a)]})
        make_run(runs, f"b{seed}", ppo(seed, "rnd"), {"charts/episodic_return": [(100, 0.0), (200, b)]})
    rep = report([str(runs)], metrics=["charts/episodic_return"], per_seed=True, smooth=2)
    assert runs / "report" / "charts_episodic_return_profile.png" in rep.files
    assert "P(none better than rnd) on final charts/episodic_return: 0.00" in rep.text
    assert "episodic_return IQM (95% CI)" in rep.text


def test_mean_difference_interval_by_hand() -> None:
    from rlkd.analysis.numerics import mean_difference_interval

    # y is constant, so every resample's difference is a resampled mean of x: inside [min x, max x].
    d, lo, hi = mean_difference_interval(np.array([1.0, 2.0, 3.0]), np.array([0.0, 0.0]))
    assert d == 2.0 and 1.0 <= lo < d < hi <= 3.0
    assert mean_difference_interval(np.array([1.0, 1.0]), np.array([0.25, 0.25])) == (0.75, 0.75, 0.75)
    # Swapping the groups negates the estimate and mirrors the interval (same resampling seed).
    x, y = np.array([0.1, 0.9, 0.4, 0.8]), np.array([0.0, 0.3, 0.2])
    a, b = mean_difference_interval(x, y), mean_difference_interval(y, x)
    assert a[0] == pytest.approx(-b[0]) and a[1] < a[0] < a[2]
    assert np.isnan(mean_difference_interval(np.array([1.0]), np.array([0.0, 1.0]))[1])
