"""``metawsm health [--json]``: every health check of the deployment, exit 0 healthy, 1 not."""

from __future__ import annotations

import sys

import click

from metawsm.cli.context import AppContext, emit_json, pass_app


@click.command("health")
@click.option("--json", "as_json", is_flag=True, help="Print {healthy, checks: [...]} as JSON.")
@pass_app
def health(app: AppContext, as_json: bool) -> None:
    """Check database, schema, broker, workers per role, beat, outbox, projection, dead letters.

    Exit 0 when every check passes, 1 otherwise; each failing check is named with the command
    that helps. An unreachable database or broker is a failing check, not an error.

    \b
    Example:
      metawsm health --json
    """
    from metawsm.errors import DatabaseMissing
    from metawsm.ops.health import judge
    from metawsm.ops.readings import read
    from metawsm.storage.engine import build_engine

    settings = app.settings
    try:
        app.require_database()
    except DatabaseMissing as exc:  # a failing check, and nothing created
        result = judge(read(None, settings, database_error=str(exc)), settings)
    else:
        engine = build_engine(settings)
        try:
            result = judge(read(engine, settings), settings)
        finally:
            engine.dispose()
    if as_json:
        emit_json(result.as_dict())
    else:
        width = max(len(check.name) for check in result.checks)
        for check in result.checks:
            mark = "ok  " if check.ok else "FAIL"
            hint = f"  -> {check.hint}" if check.hint and not check.ok else ""
            click.echo(f"{mark} {check.name.ljust(width)}  {check.detail}{hint}")
        click.echo(
            "healthy"
            if result.healthy
            else "unhealthy: " + ", ".join(check.name for check in result.failing())
        )
    if not result.healthy:
        sys.exit(1)
