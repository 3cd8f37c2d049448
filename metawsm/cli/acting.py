"""Who the command line acts as: the holder of ``METAWSM_TOKEN``, or the local shell.

With ``METAWSM_TOKEN`` set, every write acts as the identity the token proves (checked against
the database, :func:`metawsm.services.tokens.authenticate`); ``--actor-type``/``--actor-name``
given on the command line must then name that identity or the command is refused (exit 2). A
refused token is counted (``metawsm_auth_failures_total``) and the command stops (exit 1).

Without a token the shell is trusted as far as its database access goes: the identity is built
from ``--actor-type``/``--actor-name`` (or, for commands without them, ``operator`` and
``METAWSM_ACTOR_NAME`` or the login name), and the same role rules apply (docs/identities.md).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

import click

from metawsm.errors import Unauthenticated, UsageError
from metawsm.identity import Identity
from metawsm.settings import env_default

if TYPE_CHECKING:
    from metawsm.cli.context import AppContext

TOKEN_ENV = "METAWSM_TOKEN"
_FLAGS = {"actor_type": "--actor-type", "actor_name": "--actor-name"}


def acting_identity(
    app: AppContext, actor_type: str | None = None, actor_name: str | None = None
) -> Identity:
    """The identity this invocation acts as (cached on ``app`` once proven).

    Raises:
        Unauthenticated: ``METAWSM_TOKEN`` is set but refused (malformed, unknown, expired,
            revoked); counted, never shown.
        UsageError: ``--actor-type``/``--actor-name`` name someone else than the token.
    """
    bearer = env_default("TOKEN")
    if bearer is None:
        return _local(actor_type, actor_name)
    identity = _token_identity(app, bearer)
    _refuse_other_actor(identity, {"actor_type": actor_type, "actor_name": actor_name})
    return identity


def check_remote_actor(
    app: AppContext, actor_type: str | None = None, actor_name: str | None = None
) -> None:
    """Over the API the token's identity acts: typed ``--actor-type``/``--actor-name`` that
    name someone else are refused as they are locally (asks ``GET /me`` only when one was
    typed).

    Raises:
        UsageError: a typed flag names someone else than the token (exit 2, nothing sent).
    """
    given = {"actor_type": actor_type, "actor_name": actor_name}
    if not any(_typed(name) for name, value in given.items() if value is not None):
        return
    _refuse_other_actor(remote_identity(app), given)


def remote_identity(app: AppContext) -> Identity:
    """The identity the API proves for ``METAWSM_TOKEN`` (``GET /me``), once per invocation."""
    cached = app._token_identity
    if isinstance(cached, Identity):
        return cached
    assert app.remote is not None
    me = app.remote.get("/me")
    identity = Identity(me["actor_type"], me["actor_name"], me.get("run_id"), me.get("token_id"))
    app._token_identity = identity  # one question per invocation
    return identity


def _typed(name: str) -> bool:
    ctx = click.get_current_context(silent=True)
    if ctx is None or name not in ctx.params:
        return False
    return ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE


def _local(actor_type: str | None, actor_name: str | None) -> Identity:
    from metawsm.cli.options import default_actor_name

    role = (actor_type or "operator").lower()
    return Identity(role, actor_name or default_actor_name(role))


def _token_identity(app: AppContext, bearer: str) -> Identity:
    cached = app._token_identity
    if isinstance(cached, Identity):
        return cached
    from metawsm.services.tokens import authenticate

    try:
        with app.reading() as db:
            identity = authenticate(db, bearer, datetime.now(UTC))
    except Unauthenticated as exc:
        _count_failure(app, exc)
        raise Unauthenticated(f"{TOKEN_ENV} refused: {exc}", reason=exc.reason) from None
    app._token_identity = identity  # one proof per invocation
    return identity


def _count_failure(app: AppContext, failure: Unauthenticated) -> None:
    from metawsm.services.tokens import record_failed_authentication

    if app.direct():
        with app.writing() as db:
            record_failed_authentication(db, failure, "cli")
        return
    from metawsm.storage.dbapi import on_connection

    with app.container.engine.begin() as connection:
        record_failed_authentication(on_connection(connection), failure, "cli")


def _refuse_other_actor(identity: Identity, given: dict[str, str | None]) -> None:
    """Flags typed on the command line must agree with the token (defaults are ignored)."""
    ctx = click.get_current_context(silent=True)
    token_says = {"actor_type": identity.actor_type, "actor_name": identity.actor_name}
    for name, value in given.items():
        if value is None or ctx is None or name not in ctx.params:
            continue
        typed = ctx.get_parameter_source(name) == click.core.ParameterSource.COMMANDLINE
        if typed and value.lower() != token_says[name].lower():
            raise UsageError(
                f"{_FLAGS[name]} {value}: with {TOKEN_ENV} set you act as {identity.label}"
                f" (token {identity.token_id}); drop {_FLAGS[name]} or use that identity's token"
            )
