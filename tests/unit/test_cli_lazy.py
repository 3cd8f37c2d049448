"""The lazy command table of ``metawsm``: every entry names its command and says what it says.

``metawsm --help`` is rendered from the table without importing the command modules; these
tests load every entry and check the table against the real commands, so the help a user sees
is the same as if every module had been imported.
"""

from __future__ import annotations

import importlib.metadata

import click
import pytest
from click.testing import CliRunner

import metawsm
from metawsm.cli import COMMANDS, HELP, cli
from metawsm.cli.lazy import LazyCommand, LazyGroup, load_target

LIMITS = (30, 45, 80, 1000)


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_a_table_entry_names_a_command_of_that_name_with_that_summary(name: str) -> None:
    entry = COMMANDS[name]
    command = load_target(entry.target)
    assert command.name == name
    lazy = click.Command(name, help=entry.summary)
    for limit in LIMITS:
        assert lazy.get_short_help_str(limit) == command.get_short_help_str(limit)


def _fresh_group() -> LazyGroup:
    return LazyGroup(name="metawsm", help=HELP, lazy_commands=COMMANDS)


def _help(group: click.Group) -> str:
    with click.Context(group, info_name="metawsm", terminal_width=100) as ctx:
        return group.get_help(ctx)


def test_help_from_the_table_is_the_help_of_the_loaded_commands() -> None:
    group = _fresh_group()
    from_table = _help(group)
    assert group.commands == {}, "rendering --help imported a command"
    for name in COMMANDS:
        group.load(name)
    assert set(group.commands) == set(COMMANDS)
    assert _help(group) == from_table


def test_a_command_loads_with_the_subcommands_of_its_entry() -> None:
    forum = _fresh_group().get_command(click.Context(cli), "forum")
    assert isinstance(forum, click.Group)
    assert {"ask", "list", "thread", "signal"} <= set(forum.commands)


def test_an_entry_that_is_not_a_click_command_is_refused() -> None:
    group = LazyGroup(lazy_commands={"x": LazyCommand("metawsm.errors:MetawsmError", "X.")})
    with pytest.raises(TypeError, match=r"metawsm\.errors:MetawsmError is not a click command"):
        group.get_command(click.Context(group), "x")


def test_an_unknown_command_is_a_usage_error_naming_it() -> None:
    result = CliRunner().invoke(cli, ["frobnicate"])
    assert result.exit_code == 2
    assert "No such command 'frobnicate'" in result.output


def test_the_version_printed_is_the_installed_distribution_version() -> None:
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0
    assert result.output.strip().endswith(f"version {metawsm.__version__}")
    assert importlib.metadata.version("metawsm") == metawsm.__version__
