"""Old command names kept for one release: they still work, print where to go, and are hidden.

Issue 14 renamed what said too little (``metawsm bootstrap`` is ``run create --mode bootstrap``,
``forum watch`` is ``forum events``, ``migrate`` is ``import``). The old names run the new
command with a deprecation note on stderr and are left out of ``--help``.
"""

from __future__ import annotations

from typing import Any

import click


def deprecation_note(old: str, new: str) -> str:
    """The note printed when ``old`` (a command line) is used instead of ``new``."""
    return f"warning: {old} is deprecated and goes in the next release: use {new}"


def deprecated_alias(command: click.Command, name: str, old: str, new: str) -> click.Command:
    """A hidden command ``name`` that runs ``command`` after printing :func:`deprecation_note`.

    ``old`` and ``new``: the two command lines as a user types them (``metawsm forum watch``).
    A group keeps its subcommands.
    """
    note = deprecation_note(old, new)

    def warn_then_run(**kw: Any) -> Any:
        click.echo(note, err=True)
        if command.callback is None:
            return None
        return command.callback(**kw)

    help_text = f"Deprecated: use {new}."
    if isinstance(command, click.Group):
        return click.Group(
            name,
            commands=command.commands,
            callback=warn_then_run,
            params=command.params,
            help=help_text,
            hidden=True,
        )
    return click.Command(
        name, callback=warn_then_run, params=command.params, help=help_text, hidden=True
    )
