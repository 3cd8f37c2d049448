"""``metawsm schema``: list the message contracts, or print one's JSON Schema.

Data goes to stdout: one message name per line, or the schema as indented JSON. An unknown name
is a usage error (exit 2) that lists the known names.
"""

from __future__ import annotations

import json

import click

from metawsm.cli.context import emit_json
from metawsm.messages.registry import MESSAGES, json_schema


def message_names() -> list[str]:
    """The names ``metawsm schema NAME`` accepts, sorted."""
    return sorted(MESSAGES)


@click.command("schema")
@click.argument("name", required=False)
@click.option("--list", "list_names", is_flag=True, help="List the message names (the default).")
@click.option("--json", "as_json", is_flag=True, help="With the list: print it as a JSON array.")
def schema_cmd(name: str | None, list_names: bool, as_json: bool) -> None:
    """Print the JSON Schema of message NAME, or list the message names.

    Names: command, command.TYPE, event, event.TYPE, control and control.TYPE. An unknown
    NAME, or NAME with --list, is exit 2.

    \b
    Example:
      metawsm schema command.open_thread
    """
    if name is not None and list_names:
        raise click.UsageError("give a NAME or --list, not both")
    if name is None:
        names = message_names()
        if as_json:
            emit_json(names)
        else:
            for known in names:
                click.echo(known)
        return
    if name not in MESSAGES:
        known = ", ".join(message_names())
        raise click.UsageError(f"unknown message name {name!r}; known names: {known}")
    # Not emit_json: its sorted keys would scramble the schema's field order.
    click.echo(json.dumps(json_schema(name), indent=2))
