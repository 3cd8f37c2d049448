"""``metawsm token create|list|revoke``: bearer tokens per actor (docs/identities.md).

Only operators manage tokens: with ``METAWSM_TOKEN`` set it must be an operator's; without it,
the local shell (which holds the database credentials) acts as operator ``METAWSM_ACTOR_NAME``
or the login name. ``create`` prints the token once; nothing else ever prints it or its hash.

Exit codes: 0 ok, 1 refused (not an operator; unknown token id), 2 invalid input.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from metawsm.cli.acting import acting_identity
from metawsm.cli.context import AppContext, emit_json, pass_app
from metawsm.cli.options import run_id_option
from metawsm.identity import ACTOR_TYPES

if TYPE_CHECKING:
    from metawsm.services.tokens import TokenInfo
    from metawsm.storage.dbapi import Reader


@click.group("token")
def token() -> None:
    """Bearer tokens: one per actor; the API and the CLI act as the identity a token proves.

    Only operators manage tokens.

    \b
    Example:
      metawsm token create --actor-type agent --actor-name alice --run-id run-20261128-k3f9x
    """


@token.command("create")
@click.option("--actor-type", type=click.Choice(ACTOR_TYPES), required=True)
@click.option("--actor-name", required=True, help="The name the holder acts under.")
@run_id_option(required=False)  # the run the token is limited to
@click.option(
    "--expires", default="30d", show_default=True, help="Lifetime: 30d, 12h, 90m, 45s or never."
)
@click.option("--json", "as_json", is_flag=True, help="Print the token and its record as JSON.")
@pass_app
def create(
    app: AppContext,
    /,
    actor_type: str,
    actor_name: str,
    run_id: str | None,
    expires: str,
    as_json: bool,
) -> None:
    """Create a token and print it once: only its hash is stored.

    \b
    Example:
      metawsm token create --actor-type operator --actor-name olga --expires 90d
    """
    from metawsm.services import tokens

    expires_in = tokens.parse_expiry(expires)
    acting = acting_identity(app)
    now = datetime.now(UTC)
    with _writing(app) as db:
        issued = tokens.create_token(
            db,
            acting,
            actor_type=actor_type,
            actor_name=actor_name,
            run_id=run_id,
            expires_in=expires_in,
            now=now,
        )
    if as_json:
        emit_json({"token": issued.token, **issued.info.as_dict(now)})
    else:
        click.echo(issued.token)
    click.echo(
        f"created {issued.info.token_id} for {actor_type}/{actor_name}"
        f"{' on run ' + run_id if run_id else ''}, expires {_when(issued.info.expires_at)};"
        " the token above is shown only now: give it to its holder as METAWSM_TOKEN",
        err=True,
    )


@token.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def list_(app: AppContext, as_json: bool) -> None:
    """List every token (active, expired, revoked): never the token or its hash.

    \b
    Example:
      metawsm token list --json
    """
    from metawsm.services import tokens

    acting = acting_identity(app)
    with app.reading() as db:
        listed = tokens.list_tokens(db, acting)
    now = datetime.now(UTC)
    if as_json:
        emit_json({"tokens": [t.as_dict(now) for t in listed]})
        return
    for info in listed:
        click.echo(_line(info, now))


@token.command("revoke")
@click.argument("token_id")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def revoke(app: AppContext, /, token_id: str, as_json: bool) -> None:
    """Revoke a token at once (revoking a revoked token changes nothing).

    \b
    Example:
      metawsm token revoke tok-0193a4
    """
    from metawsm.services import tokens

    acting = acting_identity(app)
    now = datetime.now(UTC)
    with _writing(app) as db:
        info = tokens.revoke_token(db, acting, token_id, now)
    if as_json:
        emit_json(info.as_dict(now))
    else:
        click.echo(_line(info, now))


def _line(info: TokenInfo, now: datetime) -> str:
    run = f" run={info.run_id}" if info.run_id else ""
    return (
        f"{info.token_id} {info.status(now)} {info.actor_type}/{info.actor_name}{run}"
        f" expires={_when(info.expires_at)} created_by={info.created_by}"
        f" created_at={info.created_at.isoformat()}"
    )


def _when(moment: datetime | None) -> str:
    return moment.isoformat() if moment else "never"


@contextmanager
def _writing(app: AppContext) -> Iterator[Reader]:
    """One committed write transaction through the driver (or the engine's connection for a
    database URL the driver layer does not open)."""
    if app.direct():
        with app.writing() as db:
            yield db
        return
    from metawsm.storage.dbapi import on_connection
    from metawsm.storage.uow import translate_db_errors

    engine = app.container.engine
    with translate_db_errors(engine), engine.begin() as connection:
        yield on_connection(connection)
