"""``metawsm db``: migrate the database schema and report where it stands.

Exit codes of ``metawsm db check``: 0 at head and no drift, 1 the models and the migrations
drift apart, 3 the database is not at the head revision (or cannot be reached).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from sqlalchemy import Engine

from metawsm.cli.context import AppContext, emit_json, pass_app, render_error
from metawsm.errors import EXIT_FAILED, SchemaNotAtHead
from metawsm.storage import migrate
from metawsm.storage.engine import build_engine, masked_url


@click.group("db")
def db_group() -> None:
    """Migrate the database schema (Alembic owns it) and check it against the models.

    Only db upgrade (and metawsm up) create a SQLite database that does not exist; the other
    db commands need it to exist.

    \b
    Example:
      metawsm db current
    """


@db_group.command("upgrade")
@click.option("--revision", default="head", show_default=True, help="Target revision.")
@pass_app
def upgrade(app: AppContext, revision: str) -> None:
    """Migrate the database up to REVISION (the head by default).

    The one command (with metawsm up) that creates a SQLite database that does not exist.

    \b
    Example:
      metawsm db upgrade
    """
    with _engine(app, create=True) as engine:
        before = migrate.current_revision(engine)
        migrate.upgrade(engine, revision)
        after = migrate.current_revision(engine)
        click.echo(f"{masked_url(engine)}: {_name(before)} -> {_name(after)}")


@db_group.command("downgrade")
@click.argument("revision")
@pass_app
def downgrade(app: AppContext, revision: str) -> None:
    """Migrate the database down to REVISION ('base' drops every metawsm table and its data).

    \b
    Example:
      metawsm db downgrade 0005
    """
    with _engine(app) as engine:
        before = migrate.current_revision(engine)
        migrate.downgrade(engine, revision)
        after = migrate.current_revision(engine)
        click.echo(f"{masked_url(engine)}: {_name(before)} -> {_name(after)}")


@db_group.command("current")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@pass_app
def current(app: AppContext, as_json: bool) -> None:
    """Print the database's revision and the head revision of the installed migrations.

    \b
    Example:
      metawsm db current --json
    """
    with _engine(app) as engine:
        data = _status(engine)
    if as_json:
        emit_json(data)
        return
    state = "at head" if data["at_head"] else "NOT at head: run metawsm db upgrade"
    click.echo(f"{data['database_url']}: {_name(data['current'])} (head {data['head']}, {state})")


@db_group.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def check(ctx: click.Context, as_json: bool) -> None:
    """Check the database is at head and its schema matches the models (exit 0, 1 or 3).

    Exit 0 at head and no drift, 1 the models and the migrations drift apart, 3 not at head.

    \b
    Example:
      metawsm db check
    """
    app = ctx.ensure_object(AppContext)
    with _engine(app) as engine:
        data = _status(engine)
        not_at_head = None
        try:
            migrate.ensure_schema_at_head(engine)
        except SchemaNotAtHead as exc:
            not_at_head = exc
        drift = [] if not_at_head else [str(diff) for diff in migrate.check_drift(engine)]
    data["drift"] = drift
    if as_json:
        emit_json(data)
    elif drift:
        click.echo("models and migrations drift apart (add a revision):")
        for line in drift:
            click.echo(f"  {line}")
    elif not_at_head is None:
        click.echo(f"{data['database_url']}: at head {data['head']}, no drift")
    if not_at_head is not None:
        render_error(not_at_head)
        ctx.exit(not_at_head.exit_code)
    if drift:
        ctx.exit(EXIT_FAILED)


@contextmanager
def _engine(app: AppContext, create: bool = False) -> Iterator[Engine]:
    """The engine of the database; unless ``create``, the database must exist already."""
    if not create:
        app.require_database()
    engine = build_engine(app.settings)
    try:
        yield engine
    finally:
        engine.dispose()


def _status(engine: Engine) -> dict[str, Any]:
    current_rev = migrate.current_revision(engine)
    head = migrate.head_revision()
    return {
        "database_url": masked_url(engine),
        "current": current_rev,
        "head": head,
        "at_head": current_rev == head,
    }


def _name(revision: str | None) -> str:
    return revision if revision is not None else "base (no metawsm schema)"
