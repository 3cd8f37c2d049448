"""``metawsm config``: show the effective settings (passwords masked)."""

from __future__ import annotations

import click

from metawsm.cli.context import AppContext, emit_json, pass_app


@click.group("config")
def config_group() -> None:
    """Inspect configuration."""


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def show(app: AppContext, as_json: bool) -> None:
    """Print the effective settings, with passwords in URLs masked."""
    data = app.settings.masked()
    if as_json:
        emit_json(data)
        return
    width = max(len(k) for k in data)
    for key, value in data.items():
        click.echo(f"{key.ljust(width)}  {value}")
