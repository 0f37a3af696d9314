"""Every ``rlkd ...`` option that README.md and docs/*.md name exists in that subcommand's ``--help``."""

from __future__ import annotations

import contextlib
import functools
import io
import re
from pathlib import Path

import pytest

from rlkd.cli import main

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
SUBCOMMANDS = ("train", "resume", "tune", "eval", "monitor", "report", "collect", "pretrain", "envs", "tb")
COMMAND = re.compile(r"(?:^|[\s`(/])rlkd (" + "|".join(SUBCOMMANDS) + r")\b([^`\n#]*)")
OPTION = re.compile(r"(?<![\w-])--[a-z][a-z0-9-]*")


def documented_commands() -> list[tuple[str, str, str, list[str]]]:
    """(file, subcommand, the command's text, its options) for every ``rlkd <subcommand>`` in the docs:
    in code blocks up to the end of the line or a ``#`` comment, inline up to the closing backtick."""
    found = []
    for path in DOCS:
        for match in COMMAND.finditer(path.read_text()):
            command, rest = match.group(1), match.group(2)
            found.append((path.name, command, rest.strip(), OPTION.findall(rest)))
    return found


@functools.cache
def help_text(command: str, agent: str | None = None) -> str:
    """What ``rlkd <command> [--agent AGENT] --help`` prints."""
    argv = [command, *(["--agent", agent] if agent else []), "--help"]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 0, argv
    return out.getvalue()


def options_in_help(command: str, text: str) -> set[str]:
    """The options ``rlkd <command>`` accepts for the documented ``text``: ``train`` and ``tune`` with
    the fields of the ``--agent`` it names, ``tune`` also with every option of ``train``."""
    agent = re.search(r"--agent[ =](\w+)", text)
    helps = [help_text(command if command != "tune" else "train", agent.group(1) if agent else None)]
    if command == "tune":
        helps.append(help_text("tune"))
    return {option for h in helps for option in OPTION.findall(h)}


def test_the_docs_name_commands_and_options():
    commands = documented_commands()
    named = {command for _, command, _, _ in commands}
    assert {"train", "resume", "eval", "monitor", "report", "tune", "collect", "pretrain"} <= named
    train = {option for _, command, _, options in commands if command == "train" for option in options}
    assert {"--jobs", "--seed", "--pretrained", "--preset"} <= train


def test_every_documented_option_is_in_its_help():
    missing = sorted(
        f"{name}: rlkd {command} {text!r} names {option}"
        for name, command, text, options in documented_commands()
        for option in options
        if option not in options_in_help(command, text)
    )
    assert missing == []


def test_seed_lists_and_jobs_are_in_the_train_help():
    text = help_text("train")
    assert "--jobs N" in text and "1,2,3 or a range 1-5" in re.sub(r"\s+", " ", text)
    # The check has teeth: an option no parser knows is not found.
    assert "--no-such-option" not in options_in_help("train", "--preset debug")
