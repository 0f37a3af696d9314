"""Issue 36's candidate study analysis (bench/bench_monitor.py) on hand-made judgements."""

from __future__ import annotations

import numpy as np
import pytest

from tests.helpers import bench_script

SCORES = ("novelty", "value", "obs_novelty", "uncertainty", "jitter")


def env(failed: list[bool], novelty: list[float], rng: np.random.Generator) -> dict:
    """One env's judgement: novelty as given, every baseline noise; an alarm where novelty > 0.5."""
    stats = {s: rng.random(len(failed)).tolist() for s in SCORES} | {"novelty": novelty}
    ids = list(range(len(failed)))
    early = {s: {"score": v, "positive": failed, "episode": ids} for s, v in stats.items()}
    alarm = [{"novelty": 3 if n > 0.5 else None} for n in novelty]
    return {"failed": failed, "statistic": stats, "alarm": alarm, "early": early}


@pytest.fixture(scope="module")
def summary():
    bench = bench_script("bench_monitor")
    rng = np.random.default_rng(0)
    ok = [False] * 40
    seeds = []
    for _ in range(3):
        # In-distribution: 40 successes, 4 of them with a high novelty (false alarms), 10 failures.
        in_dist = env(ok + [True] * 10, [0.9] * 4 + [0.1] * 36 + [0.8] * 10, rng)
        # Harmful shift: mostly failures, all novel; benign shift: as in-distribution, all successes.
        harmful = env([False] * 5 + [True] * 45, [0.2] * 5 + [0.95] * 45, rng)
        benign = env(ok, [0.1] * 40, rng)
        seeds.append({"envs": {"in-distribution": in_dist, "harmful": harmful, "benign": benign}})
    noise = lambda e: e["statistic"] | {"novelty": rng.random(len(e["failed"])).tolist()}  # noqa: E731
    blind = [{"envs": {lb: e | {"statistic": noise(e)} for lb, e in r["envs"].items()}} for r in seeds]
    return bench.analyse_study("agv", {"default": seeds, "blind": blind})


def test_harmful_shifts_are_read_from_success(summary) -> None:
    assert summary["success"]["in-distribution"] == pytest.approx(0.8)
    assert summary["harmful"] == ["harmful"] and summary["success"]["benign"] == 1.0


def test_a_separating_score_wins_and_noise_does_not(summary) -> None:
    table = summary["auroc"]
    # Pooled over in-distribution and the harmful shift, 3 seeds: failures score 0.8 (30) or 0.95
    # (135), successes 0.9 (12), 0.1 (108) or 0.2 (15); the AUROC counts the pairs by hand.
    succ = np.array([0.9] * 12 + [0.1] * 108 + [0.2] * 15)
    fail = np.array([0.8] * 30 + [0.95] * 135)
    exact = np.mean(fail[:, None] > succ[None, :]) + 0.5 * np.mean(fail[:, None] == succ[None, :])
    assert table["candidate default"]["pooled"]["value"] == pytest.approx(exact)
    assert summary["winner"] == "candidate default"
    assert table["candidate blind"]["pooled"]["ci95"][0] < 0.5 < table["candidate blind"]["pooled"]["ci95"][1]
    assert table["baseline value"]["vs_value"]["value"] == 0.0


def test_alarm_rates_by_hand(summary) -> None:
    alarm = summary["auroc"]["candidate default"]["alarm"]
    assert alarm["fpr_in_distribution"] == pytest.approx(4 / 40)
    assert alarm["fpr"] == pytest.approx(12 / 135) and alarm["tpr"] == 1.0
    assert (alarm["in_distribution_alarms"], alarm["in_distribution_successes"]) == (12, 120)


def test_markdown_has_every_score(summary) -> None:
    text = bench_script("bench_monitor").study_markdown({"agv": summary})
    assert "Harmful: harmful." in text
    assert "Winner (beats value and the random alarm): candidate default" in text
    assert all(f"| baseline {s} |" in text for s in SCORES[1:]) and "| candidate blind |" in text
