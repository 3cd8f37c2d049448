"""``metawsm dlq list|show|redrive|purge``: inspect and act on dead letters."""

from __future__ import annotations

import click

from metawsm.cli.acting import acting_identity
from metawsm.cli.context import AppContext, emit_json, pass_app
from metawsm.services import record_reads


@click.group("dlq")
def dlq() -> None:
    """Dead letters: messages that failed for good."""


@dlq.command("list")
@click.option("--all", "include_all", is_flag=True, help="Include redriven and purged ones.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def list_(app: AppContext, include_all: bool, as_json: bool) -> None:
    """List dead letters, newest first."""
    with app.reading() as db:
        rows = record_reads.list_dead_letters(db, include_all=include_all)
    if as_json:
        emit_json({"dead_letters": rows})
        return
    for r in rows:
        click.echo(
            f"{r['message_id']} {r['status']} {r['topic']} attempts={r['attempts']}"
            f" last={r['last_failed_at']} error={r['error'][:120]}"
        )


@dlq.command("show")
@click.argument("message_id")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def show(app: AppContext, message_id: str, as_json: bool) -> None:
    """Show one dead letter with its message and traceback."""
    with app.reading() as db:
        row = record_reads.show_dead_letter(db, message_id)
    if as_json:
        emit_json(row)
        return
    for key, value in row.items():
        click.echo(f"{key}: {value}")


@dlq.command("redrive")
@click.argument("message_id")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def redrive(app: AppContext, message_id: str, as_json: bool) -> None:
    """Republish a dead message with its original id (nothing is applied twice)."""
    from metawsm.services import deadletters

    c = app.container
    result = deadletters.redrive(c.runtime, message_id, identity=acting_identity(app))
    if as_json:
        emit_json(result)
    else:
        note = "published" if result["published"] else "queued for the drainer"
        click.echo(f"redriven {message_id}: {note}")


@dlq.command("purge")
@click.argument("message_id", required=False)
@click.option("--all", "purge_all", is_flag=True, help="Purge every dead letter.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def purge(app: AppContext, message_id: str | None, purge_all: bool, as_json: bool) -> None:
    """Mark one dead letter (or, with --all, every one) purged."""
    if not message_id and not purge_all:
        raise click.UsageError("give a MESSAGE_ID or --all")
    from metawsm.services import deadletters

    identity = acting_identity(app)
    count = deadletters.purge(
        app.container.engine, None if purge_all else message_id, identity=identity
    )
    if as_json:
        emit_json({"purged": count})
    else:
        click.echo(f"purged {count}")
