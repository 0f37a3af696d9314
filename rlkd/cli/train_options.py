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
        from rlkd.core.config import add_field_options

        add_field_options(parser, agent_cls, skip=skip)
    return parser


def resolve_train(argv: Sequence[str]) -> tuple[Any, Any]:
    """Parse ``rlkd train`` options into (agent module, resolved config)."""
    from rlkd.agents import agent_module
    from rlkd.core.config import read_yaml, resolve

    first, _ = train_parser(None, set()).parse_known_args(argv)
    agent = first.agent
    if first.config and "--agent" not in argv:
        agent = str(read_yaml(first.config).get("agent", agent))
    module = agent_module(agent)
    skip = {"agent", "preset"}
    args = train_parser(module.CONFIG, skip).parse_args(argv)
    cli = {k: v for k, v in vars(args).items() if k not in ("agent", "preset", "config")}
    cli["agent"] = agent
    cfg = resolve(module.CONFIG, module.PRESETS, args.preset, args.config, cli)
    return module, cfg
