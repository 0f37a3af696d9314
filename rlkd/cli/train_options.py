"""The options of ``rlkd train`` (also read by ``rlkd tune``): parse them into an agent and its config.

A module of its own so that :mod:`rlkd.cli.tune` and :mod:`rlkd.cli` share it without importing each
other.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any, NoReturn

from rlkd.errors import UserError


class Parser(argparse.ArgumentParser):
    """argparse with rlkd's error contract (docs/design.md): one ``error:`` line, exit status 2."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{message} (see `{self.prog} --help`)")


def train_parser(agent_cls: type | None, skip: set[str]) -> Parser:
    """The parser of ``rlkd train``: with ``agent_cls``, one option per config field (not ``skip``)."""
    parser = Parser(
        prog="rlkd train",
        description="Train an agent. Values resolve as: field defaults < --preset < --config < options.",
        add_help=agent_cls is not None,  # the first pass only finds --agent; --help needs the fields
    )
    parser.add_argument("--agent", default="ppo", help="ppo, dreamer, diswm (or pretrain) (default: ppo)")
    parser.add_argument(
        "--preset", default=None, help="named preset of the agent, e.g. debug, classic, atari"
    )
    parser.add_argument("--config", default=None, metavar="FILE.yaml", help="YAML file of field: value")
    parser.add_argument(
        "--env", dest="env_id", default=argparse.SUPPRESS, help="environment id (alias of --env-id)"
    )
    if agent_cls is not None:
        from rlkd.core.config import add_field_options, field_docs

        add_field_options(parser, agent_cls, skip=skip | {"seed"})
        runs = parser.add_argument_group("seeds: one run, or one run folder per seed")
        doc = field_docs(agent_cls).get("seed", "Random seed.")
        runs.add_argument(
            "--seed", type=seed_option, default=argparse.SUPPRESS, metavar="V",
            help=f"{doc} Several seeds, as 1,2,3 or a range 1-5 (mixable: 1-3,7), train one run "
            f"folder each, --jobs at a time (default: {agent_cls().seed!r})",
        )  # fmt: skip
        runs.add_argument(
            "--jobs", type=jobs_option, default=1, metavar="N",
            help="with several seeds: how many train at the same time, each in its own process (default: 1)",
        )  # fmt: skip
    return parser


def seed_option(text: str) -> str | list[int]:
    """The type of ``--seed``: one seed as typed (the config field converts and checks it), or the
    seeds of a list ``1,2,3``, a range ``1-5`` or both (``1-3,7``)."""
    if "," not in text and "-" not in text.lstrip("-"):
        return text
    seeds: list[int] = []
    for part in text.split(","):
        lo, dash, hi = part.strip().partition("-")
        if not lo.isdigit() or (dash and not hi.isdigit()) or (dash and int(hi) < int(lo)):
            raise UserError(f"--seed takes seeds like 1,2,3 or a range like 1-5, got {text!r}")
        seeds += list(range(int(lo), int(hi) + 1)) if dash else [int(lo)]
    if len(set(seeds)) != len(seeds):
        raise UserError(f"--seed {text!r} names a seed twice")
    return seeds


def jobs_option(text: str) -> int:
    """The type of ``--jobs``: a positive integer."""
    if not text.isdigit() or int(text) < 1:
        raise UserError(f"--jobs must be a positive integer, got {text!r}")
    return int(text)


def parse_train(argv: Sequence[str]) -> tuple[Any, Any, list[int] | None, int]:
    """Parse ``rlkd train`` options into (agent module, resolved config, seeds, jobs).

    ``seeds`` is None for one run (the config's seed); for several, the config holds the first
    seed (so bad options fail once, before any run starts) and ``jobs`` says how many run at once.
    """
    from rlkd.agents import agent_module
    from rlkd.core.config import read_yaml, resolve

    first, _ = train_parser(None, set()).parse_known_args(argv)
    agent = first.agent
    if first.config and "--agent" not in argv:
        agent = str(read_yaml(first.config).get("agent", agent))
    module = agent_module(agent)
    skip = {"agent", "preset"}
    args = train_parser(module.CONFIG, skip).parse_args(argv)
    cli = {k: v for k, v in vars(args).items() if k not in ("agent", "preset", "config", "jobs")}
    cli["agent"] = agent
    seeds = cli.get("seed") if isinstance(cli.get("seed"), list) else None
    if args.jobs > 1 and seeds is None:
        raise UserError("--jobs runs several seeds at a time; give them as --seed 1,2,3 or --seed 1-5")
    if seeds is not None:
        cli["seed"] = seeds[0]
    cfg = resolve(module.CONFIG, module.PRESETS, args.preset, args.config, cli)
    return module, cfg, seeds, args.jobs


def resolve_train(argv: Sequence[str]) -> tuple[Any, Any]:
    """Parse the options of one run (``rlkd tune``'s trials) into (agent module, resolved config)."""
    module, cfg, seeds, _ = parse_train(argv)
    if seeds is not None:
        raise UserError("this command runs one seed at a time: give --seed one number")
    return module, cfg
