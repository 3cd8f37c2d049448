"""``metawsm config``: show the effective settings (credentials masked) and where they come from."""

from __future__ import annotations

import click

from metawsm.cli.context import AppContext, emit_json, pass_app


@click.group("config")
def config_group() -> None:
    """Show the effective settings and where the database was found.

    \b
    Example:
      metawsm config show
    """


@config_group.command("show")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def show(app: AppContext, as_json: bool) -> None:
    """Print the effective settings, every credential masked, and how the database was chosen.

    Every credential is replaced by ***: the password of a URL (and a bare token in one), a
    query parameter named like a credential, and a setting named like a secret. The database
    line says why that database: METAWSM_DATABASE_URL (environment or .env), or the nearest
    .metawsm/metawsm.db walking up from the current directory.

    \b
    Example:
      metawsm config show --json
    """
    from metawsm.settings import database_url_origin

    data = app.settings.masked()
    data["database_url_origin"] = database_url_origin()
    if as_json:
        emit_json(data)
        return
    width = max(len(k) for k in data)
    for key, value in data.items():
        click.echo(f"{key.ljust(width)}  {value}")
