"""Issue 37's decision rule (bench/rdd_decision.py) on hand-made study outcomes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.helpers import bench_script

DEFAULT = "rdd_d64_s1_m1"


def cells(success: dict[str, list[float]]) -> dict[str, dict[str, list[float]]]:
    """Study cells with the given per-seed success (return = success, found = success > 0)."""
    return {n: {"success": s, "return": s, "found": [float(x > 0) for x in s]} for n, s in success.items()}


@pytest.fixture(scope="module")
def rule():
    return bench_script("rdd_decision")


@pytest.fixture(scope="module")
def chain(rule):
    return rule.summarise(cells({
        "rnd": [1, 1, 0, 1, 1],
        DEFAULT: [0, 0, 0, 0, 0],
        "rdd_d32_s1_m1": [0, 0, 0, 0, 0],
        "rdd_d128_s1_m1": [1, 1, 1, 0, 1],
        "rdd_d256_s1_m1": [1, 1, 1, 1, 0],
        "rdd_d64_s0.5_m1": [0, 0, 1, 0, 0],
    }))  # fmt: skip


def agv(rule, d128: float, d256: float):
    return rule.summarise(cells({DEFAULT: [0.9] * 5, "rnd": [0.9] * 5, "rdd_d128_s1_m1": [d128] * 5,
                                 "rdd_d256_s1_m1": [d256] * 5}))  # fmt: skip


def test_summary_by_hand(chain) -> None:
    row = chain["rdd_d128_s1_m1"]
    assert row["seeds"] == 5 and row["found"] == 4 and row["success"][0] == pytest.approx(0.8)
    assert row["success"][1] <= 0.8 <= row["success"][2] and row["success"][2] <= 1.0
    assert row[f"vs_{DEFAULT}"]["difference"][0] == pytest.approx(0.8)
    assert row[f"vs_{DEFAULT}"]["p_improvement"][0] == pytest.approx(0.9)  # 20 of 25 pairs win, 5 tie
    assert row["vs_rnd"]["difference"][0] == pytest.approx(0.0)
    assert f"vs_{DEFAULT}" not in chain[DEFAULT] and "vs_rnd" not in chain["rnd"]


def test_which_cells_beat_the_default(rule, chain) -> None:
    # The default found the goal in 0 seeds: a cell beats it by finding it in at least 3.
    rdd = [n for n in chain if n.startswith("rdd_") and n != DEFAULT]
    beats = {n for n in rdd if rule.beats_default(chain[n], chain[DEFAULT])}
    assert beats == {"rdd_d128_s1_m1", "rdd_d256_s1_m1"}
    # Where the default found it in 2 seeds, only an interval wholly above 0 counts.
    some = rule.summarise(cells({DEFAULT: [0, 0, 0, 0.5, 0.5], "rdd_d128_s1_m1": [1, 1, 1, 0, 0],
                                 "rdd_d256_s1_m1": [1, 1, 1, 1, 1]}))  # fmt: skip
    assert not rule.beats_default(some["rdd_d128_s1_m1"], some[DEFAULT])
    assert rule.beats_default(some["rdd_d256_s1_m1"], some[DEFAULT])


def test_choice_reads_agv_then_the_papers_values_then_the_smaller_d(rule, chain) -> None:
    # Chain means 0.8 and 0.8 tie; AGV ties too; both have the paper's sigma and m: the smaller d.
    assert rule.choose(chain, agv(rule, 0.9, 0.9))["chosen"] == "rdd_d128_s1_m1"
    assert rule.choose(chain, agv(rule, 0.9, 0.95))["chosen"] == "rdd_d256_s1_m1"  # higher AGV first
    assert rule.choose(chain, agv(rule, 0.8, 0.9))["chosen"] == "rdd_d256_s1_m1"  # d128 costs AGV > 0.05
    kept = rule.choose(chain, agv(rule, 0.8, 0.8))  # both cost AGV, no other winner: the default stays
    assert kept["chosen"] == DEFAULT and kept["dropped_for_agv"] == ["rdd_d128_s1_m1", "rdd_d256_s1_m1"]
    waiting = rule.choose(chain, {})
    assert waiting["chosen"] is None and "AGV runs missing" in waiting["reason"]
    seeds = {DEFAULT: [0.9] * 5, "rdd_d128_s1_m1": [0.9] * 4, "rdd_d256_s1_m1": [0.9] * 5}
    partial = rule.summarise(cells(seeds))
    assert rule.choose(chain, partial)["chosen"] is None  # d128 has 4 of its 5 seeds: the rule waits


def test_rdd_against_rnd(rule, chain) -> None:
    assert rule.as_good_as_rnd(chain["rdd_d128_s1_m1"], chain["rnd"])  # same mean, found 4 vs 4
    assert not rule.as_good_as_rnd(chain[DEFAULT], chain["rnd"])  # interval -0.8 [-1, -0.4], found 0 vs 4


def test_a_run_is_finished_at_or_past_its_total(tmp_path: Path) -> None:
    finished = bench_script("bench_exploration").finished
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    assert not finished(run, 300_000)
    (run / "checkpoints" / "step_000000262144.pt").touch()
    assert not finished(run, 300_000)
    (run / "checkpoints" / "step_000000300032.pt").touch()  # 293 rollouts of 8 x 128 steps
    assert finished(run, 300_000) and not finished(run, 400_000)


def test_cell_names_give_the_parameters(rule) -> None:
    assert rule.parameters("rdd_d64_s0.5_m0") == {"d": 64.0, "sigma": 0.5, "m": 0.0}
