"""Issue 37's analysis and decision rule (bench/results/exploration_rdd/PLAN.md), on the study's runs.

Per run: **success** is the last logged ``charts/success_rate``, **return** the last logged
``charts/episodic_return``, **found** whether any logged success rate was above 0. A task whose env
reports no success (Montezuma, rule 7) has none; there **found** is any logged return above 0 and the
comparisons read the return. Per cell: means over seeds with 95% bootstrap intervals, and the count
of seeds that found the goal. The rule's comparisons use the difference of means (bootstrap
interval) and the probability of improvement.

    python bench/rdd_decision.py                  # every task with runs; writes decision.json / .md
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT = "rdd_d64_s1_m1"  # the defaults the study started from (PLAN.md, "Question")
PAPER = {"sigma": 1.0, "m": 1.0}  # values reported as the paper's (tie-break, rule 3)
SUCCESS, RETURN = "charts/success_rate", "charts/episodic_return"
SEEDS = 5  # seeds per cell (PLAN.md): the rule reads a cell only once all of them finished


def run_outcome(run: Path) -> dict[str, float] | None:
    """success, return and found (1.0 / 0.0) of one finished run, and (diagnostic) the std the
    intrinsic reward was divided by at the end; None when nothing is logged."""
    from rlkd.analysis import load_run

    scalars = load_run(run).scalars
    if RETURN not in scalars:
        return None
    returns = scalars[RETURN].values
    if SUCCESS in scalars:
        rates = scalars[SUCCESS].values
        found = (rates > 0).any()
    else:  # a task without a goal flag (Montezuma): no success; "found" is any scoring episode
        rates, found = np.array([np.nan]), (returns > 0).any()
    return {"success": float(rates[-1]), "return": float(returns[-1]), "found": float(found),
            "int_return_std": intrinsic_return_std(run)}  # fmt: skip


def intrinsic_return_std(run: Path) -> float:
    """The running std of the intrinsic return in the run's newest checkpoint (NaN without one):
    the scale the bonus is divided by (RND's normalisation, over the whole run)."""
    from rlkd.core.run import load_data_file

    newest = max((run / "checkpoints").glob("step_*.pt"), default=None)
    if newest is None:
        return float("nan")
    intrinsic = load_data_file(newest, "checkpoint", "rerun it")["state"].get("intrinsic") or {}
    var = intrinsic.get("reward_scaler.stats.var")
    return float("nan") if var is None else float(var) ** 0.5


def seed_order(run: Path) -> tuple[str, int]:
    """Sort key of a ``<cell>__seed<N>`` folder: by cell, then by seed as a number."""
    cell, seed = run.name.split("__seed")
    return cell, int(seed)


def cell_values(root: Path, total: int) -> dict[str, dict[str, list[float]]]:
    """Cell name -> metric -> one value per finished seed (a checkpoint at or past ``total``), from
    ``root/<cell>__seed<N>/`` folders; cells in the PLAN's order (``RDD_CONFIGS``), then any other."""
    from bench_exploration import RDD_CONFIGS, finished

    cells: dict[str, dict[str, list[float]]] = {}
    for run in sorted(root.glob("*__seed*"), key=seed_order):
        if not finished(run, total) or (out := run_outcome(run)) is None:
            continue
        cell = cells.setdefault(seed_order(run)[0], {k: [] for k in out})
        for key, value in out.items():
            cell[key].append(value)
    order = [*RDD_CONFIGS, *sorted(set(cells) - set(RDD_CONFIGS))]
    return {name: cells[name] for name in order if name in cells}


def summarise(cells: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, Any]]:
    """Per cell: seeds, means with bootstrap intervals, found count; against the default and RND:
    difference of mean success with its interval and the probability of improvement."""
    from rlkd.analysis.numerics import bootstrap_band, mean_difference_interval, probability_of_improvement

    def band(values: list[float]) -> list[float]:
        if np.isnan(values).any():  # a task without success (Montezuma)
            return [float("nan")] * 3
        b = bootstrap_band(np.asarray(values)[:, None])
        return [float(b.mean[0]), float(b.lower[0]), float(b.upper[0])]

    table: dict[str, dict[str, Any]] = {}
    for name, cell in cells.items():
        scale = float(np.median(cell.get("int_return_std", [np.nan])))  # diagnostic, not in the rule
        # The comparisons read success, or the return on a task without one (rule 7, Montezuma).
        metric = "return" if np.isnan(cell["success"]).any() else "success"
        row: dict[str, Any] = {"seeds": len(cell["success"]), "found": int(sum(cell["found"])),
                               "success": band(cell["success"]), "return": band(cell["return"]),
                               "compared": metric, "int_return_std": scale}  # fmt: skip
        for ref in (DEFAULT, "rnd"):
            if ref in cells and ref != name:
                x, y = cell[metric], cells[ref][metric]
                row[f"vs_{ref}"] = {"difference": list(mean_difference_interval(x, y)),
                                    "p_improvement": list(probability_of_improvement(x, y))}  # fmt: skip
        table[name] = row
    return table


def beats_default(row: dict[str, Any], default: dict[str, Any]) -> bool:
    """Rule 2: the difference's interval lies above 0, or the default found the goal in at most 1
    seed and this cell in at least 3."""
    above = row[f"vs_{DEFAULT}"]["difference"][1] > 0
    return above or (default["found"] <= 1 and row["found"] >= 3)


def parameters(name: str) -> dict[str, float]:
    """d, sigma and m of an RDD cell name such as ``rdd_d64_s0.5_m1``."""
    d, s, m = name.removeprefix("rdd_").split("_")
    return {"d": float(d[1:]), "sigma": float(s[1:]), "m": float(m[1:])}


def choose(chain: dict[str, dict[str, Any]], agv: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Rules 2-4: the new default (or the old one kept), with the reason and what is still missing."""
    rdd = [n for n in chain if n.startswith("rdd_") and n != DEFAULT]
    winners = [n for n in rdd if beats_default(chain[n], chain[DEFAULT])]
    if not winners:
        why = "no other cell beats the default on the chain (rule 4)"
        return {"chosen": DEFAULT, "winners": [], "reason": why}
    best = max(chain[n]["success"][0] for n in winners)
    tied = [n for n in winners if chain[n]["success"][0] >= best - 0.05]
    missing = [n for n in [DEFAULT, *tied] if agv.get(n, {}).get("seeds", 0) < SEEDS]
    if missing:
        return {"chosen": None, "winners": winners, "tied": tied,
                "reason": f"AGV runs missing (fewer than {SEEDS} seeds): {missing}"}  # fmt: skip
    floor = agv[DEFAULT]["success"][0] - 0.05
    allowed = [n for n in tied if agv[n]["success"][0] >= floor]
    if not allowed:  # the best cells cost AGV success: the next-best winners are read the same way
        rest = choose({n: r for n, r in chain.items() if n not in tied}, agv)
        why = f"{tied} beat the default on the chain but cost AGV more than 0.05 (rule 3); then: "
        dropped = tied + rest.get("dropped_for_agv", [])
        return rest | {"dropped_for_agv": dropped, "reason": why + rest["reason"]}

    def rank(n: str) -> tuple[float, int, float]:
        p = parameters(n)
        return (agv[n]["success"][0], int(p["sigma"] == PAPER["sigma"] and p["m"] == PAPER["m"]), -p["d"])

    chosen = max(allowed, key=rank)
    return {"chosen": chosen, "winners": winners, "tied": tied,
            "reason": "beats the default on the chain, AGV within 0.05 of the default (rule 3)"}  # fmt: skip


def as_good_as_rnd(rdd: dict[str, Any], rnd: dict[str, Any]) -> bool:
    """Rule 5: the interval of (RDD - RND) mean success reaches above -0.1 (its upper end), and
    RDD found the goal in at least as many seeds as RND minus one."""
    return rdd["vs_rnd"]["difference"][2] > -0.1 and rdd["found"] >= rnd["found"] - 1


def markdown(task: str, table: dict[str, dict[str, Any]]) -> str:
    """One task's table: cells with success, return, found, and the comparisons."""
    fmt = lambda b: "-" if np.isnan(b[0]) else f"{b[0]:.3f} [{b[1]:.3f}, {b[2]:.3f}]"  # noqa: E731
    metric = next(iter(table.values()), {}).get("compared", "success")
    head = (f"| cell | seeds | found | success [95% CI] | return [95% CI] | {metric} - default [95% CI] "
            f"| P(> default) | {metric} - RND [95% CI] | int. return std at the end (median) |")  # fmt: skip
    lines = [f"### {task}", "", head, "|---" * 9 + "|"]
    for name, r in table.items():
        vs_d, vs_r = r.get(f"vs_{DEFAULT}"), r.get("vs_rnd")
        p_d = f"{vs_d['p_improvement'][0]:.2f}" if vs_d else "-"
        lines.append(f"| `{name}` | {r['seeds']} | {r['found']} | {fmt(r['success'])} | {fmt(r['return'])} | "
                     f"{fmt(vs_d['difference']) if vs_d else '-'} | {p_d} | "
                     f"{fmt(vs_r['difference']) if vs_r else '-'} | {r['int_return_std']:.3g} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def decide(out: Path, totals: dict[str, int]) -> dict[str, Any]:
    """Summarise every task of ``totals`` (name -> env steps per run) with runs under ``out/runs``,
    apply the rule, write ``decision.json`` and ``decision.md``."""
    roots = {t: (out / "runs" / t, n) for t, n in totals.items() if (out / "runs" / t).is_dir()}
    tables = {t: summarise(cell_values(root, n)) for t, (root, n) in roots.items()}
    result: dict[str, Any] = {"tasks": tables}
    if "chain" in tables and DEFAULT in tables["chain"]:
        result["decision"] = choose(tables["chain"], tables.get("agv", {}))
        chosen = result["decision"]["chosen"]
        # Rule 5, like rule 3, reads a task only once both cells have all their seeds.
        complete = lambda tab: all(tab.get(n, {}).get("seeds", 0) >= SEEDS for n in (chosen, "rnd"))  # noqa: E731
        result["as_good_as_rnd"] = {t: as_good_as_rnd(tab[chosen], tab["rnd"]) for t, tab in tables.items()
                                    if complete(tab)}  # fmt: skip
    (out / "decision.json").write_text(json.dumps(result, indent=1) + "\n")
    text = "\n".join(markdown(t, tab) for t, tab in tables.items())
    text += "\n" + json.dumps({k: v for k, v in result.items() if k != "tasks"}, indent=1) + "\n"
    (out / "decision.md").write_text(text)
    return result


def main() -> None:
    from bench_exploration import task_budgets

    out = Path("bench/results/exploration_rdd")
    decide(out, task_budgets())
    print((out / "decision.md").read_text())


if __name__ == "__main__":
    main()
