"""The ``worldrt`` parser built for one command's group parses that command as the whole parser does."""

from __future__ import annotations

import argparse

import pytest

from worldrt.host.cli._common import Parents
from worldrt.host.cli._main import COMMANDS, GROUPS, parser

pytestmark = pytest.mark.pure


def test_every_command_is_mapped_to_the_group_that_adds_it() -> None:
    added = {}
    for group in GROUPS:
        commands = argparse.ArgumentParser().add_subparsers(dest="command")
        group.add_commands(commands, Parents.make())
        added.update(dict.fromkeys(commands.choices, group))
    assert added == COMMANDS


@pytest.mark.parametrize("argv", [
    ["verse", "pipeline", "1069", "--json"],
    ["verse", "run", "1069", "--on", "modal"],
    ["invocations", "--limit", "3", "--json"],
    ["instance", "ls"],
    ["lattice", "serve", "--listen", "198.18.0.1:4222"],
    ["provider", "serve", "modal", "--listen", "unix:/tmp/x.sock"],
])
def test_a_command_parses_the_same_with_its_group_alone(argv: list[str]) -> None:
    alone, whole = vars(parser(argv).parse_args(argv)), vars(parser().parse_args(argv))
    assert alone.pop("func").__qualname__ == whole.pop("func").__qualname__
    assert alone == whole


def test_a_command_line_without_a_known_command_gets_every_command() -> None:
    for argv in ([], ["--help"], ["nonsense"]):
        commands = next(a for a in parser(argv)._actions if isinstance(a, argparse._SubParsersAction))
        assert set(commands.choices) == set(COMMANDS)
