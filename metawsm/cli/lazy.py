"""A click group that imports a command's module only when that command runs.

click's documented lazy-group pattern: the group holds a table of command name → where the
command lives (``"package.module:attribute"``) and its one-line help. ``metawsm forum list``
imports the forum module and nothing of ``db``, ``up`` or ``worker``; ``metawsm --help`` lists
every command from the table without importing any of them (docs/performance.md,
"Command-line start-up"). ``tests/unit/test_cli_lazy.py`` checks the table against the commands.
"""

from collections.abc import Mapping
from importlib import import_module
from types import MappingProxyType
from typing import Any, NamedTuple

import click


class LazyCommand(NamedTuple):
    """Where a command lives and what ``--help`` says of it before it is imported.

    ``target``: ``"module:attribute"`` of the click command; ``summary``: its help's first
    sentence, as click shows it; ``subcommands``: name → target of commands defined in other
    modules that join the group when it loads (``forum signal``); ``hidden``: left out of
    ``--help`` (an old name kept for one release).
    """

    target: str
    summary: str
    subcommands: Mapping[str, str] = MappingProxyType({})  # read only: one shared, empty
    hidden: bool = False


def load_target(target: str) -> click.Command:
    """The click command named by ``"module:attribute"``.

    Raises:
        TypeError: the attribute is not a click command (a wrong table entry).
    """
    module_name, _, attribute = target.partition(":")
    command = getattr(import_module(module_name), attribute)
    if not isinstance(command, click.Command):
        raise TypeError(f"{target} is not a click command")
    return command


class LazyGroup(click.Group):
    """A group whose commands are imported on first use, from ``lazy_commands``."""

    def __init__(self, *args: Any, lazy_commands: Mapping[str, LazyCommand], **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.lazy_commands = dict(lazy_commands)

    def list_commands(self, ctx: click.Context) -> list[str]:
        """Every command name: the table's and any added directly."""
        return sorted({*self.lazy_commands, *super().list_commands(ctx)})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        """The command ``cmd_name``, importing its module the first time it is asked for."""
        loaded = super().get_command(ctx, cmd_name)
        if loaded is not None or cmd_name not in self.lazy_commands:
            return loaded
        return self.load(cmd_name)

    def load(self, cmd_name: str) -> click.Command:
        """Import the command ``cmd_name`` of the table (and its subcommands) and keep it."""
        entry = self.lazy_commands[cmd_name]
        command = load_target(entry.target)
        if entry.subcommands:
            if not isinstance(command, click.Group):
                raise TypeError(f"{entry.target} has subcommands but is not a click group")
            for name, target in entry.subcommands.items():
                if name not in command.commands:
                    command.add_command(load_target(target), name)
        self.add_command(command, cmd_name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The "Commands" section of ``--help``: summaries from the table, nothing imported."""
        rows = []
        for name in self.list_commands(ctx):
            entry = self.lazy_commands.get(name)
            command = self.commands.get(name) or click.Command(
                name,
                help=entry.summary if entry else None,
                hidden=entry.hidden if entry else False,
            )
            if not command.hidden:
                rows.append((name, command))
        if not rows:
            return
        limit = formatter.width - 6 - max(len(name) for name, _ in rows)
        with formatter.section("Commands"):
            formatter.write_dl([(name, cmd.get_short_help_str(limit)) for name, cmd in rows])
