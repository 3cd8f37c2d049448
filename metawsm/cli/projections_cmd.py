"""``metawsm projections rebuild [--check]``: rebuild read models from the event log."""

from __future__ import annotations

import click

from metawsm.cli.context import AppContext, emit_json, pass_app
from metawsm.errors import EXIT_FAILED
from metawsm.services.rebuild import rebuild


@click.group("projections")
def projections() -> None:
    """Read models: rebuild and check."""


@projections.command("rebuild")
@click.option("--check", is_flag=True, help="Only compare; exit 1 when live models differ.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def rebuild_cmd(app: AppContext, check: bool, as_json: bool) -> None:
    """Rebuild every read model from forum_events; report differences from the live ones."""
    report = rebuild(app.container.engine, check=check)
    if as_json:
        emit_json(report.as_dict())
    else:
        verb = "checked" if check else "rebuilt"
        click.echo(
            f"{verb} {report.threads} thread views and {report.stats_rows} stats rows from"
            f" {report.events} events in {report.seconds:.3f} s;"
            f" {len(report.differences)} difference(s)"
        )
        for line in report.differences[:200]:
            click.echo(f"  {line}")
    if check and report.differences:
        raise click.exceptions.Exit(EXIT_FAILED)
