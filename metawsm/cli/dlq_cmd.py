"""``metawsm dlq list|show|redrive|purge``: inspect and act on dead letters."""

from __future__ import annotations

import click

from metawsm.cli.acting import acting_identity
from metawsm.cli.context import AppContext, emit_json, pass_app
from metawsm.cli.tables import table
from metawsm.services import record_reads


@click.group("dlq")
def dlq() -> None:
    """Dead letters: messages that failed for good.

    A message that failed METAWSM_RETRY_MAX_ATTEMPTS times, or is invalid, lands here; redrive
    republishes it, purge gives up on it.

    \b
    Example:
      metawsm dlq list
    """


@dlq.command("list")
@click.option("--all", "include_all", is_flag=True, help="Include redriven and purged ones.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def list_(app: AppContext, include_all: bool, as_json: bool) -> None:
    """List dead letters, newest first.

    \b
    Example:
      metawsm dlq list --all --json
    """
    remote = app.remote
    if remote is not None:
        rows = remote.get("/dead-letters", {"all": include_all})["dead_letters"]
    else:
        with app.reading() as db:
            rows = record_reads.list_dead_letters(db, include_all=include_all)
    if as_json:
        emit_json({"dead_letters": rows})
        return
    headers = ["message_id", "status", "topic", "attempts", "last failed", "error"]
    cells = [
        [r["message_id"], r["status"], r["topic"], r["attempts"], r["last_failed_at"], _line(r)]
        for r in rows
    ]
    for line in table(headers, cells):
        click.echo(line)
    if not rows:
        more = "" if include_all else " (--all also lists redriven and purged ones)"
        click.echo(f"no dead letters{more}", err=True)


def _line(row: dict[str, object]) -> str:
    """The first line of the error, at most 100 characters."""
    first = str(row["error"] or "").strip().splitlines()
    return first[0][:100] if first else ""


@dlq.command("show")
@click.argument("message_id")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def show(app: AppContext, message_id: str, as_json: bool) -> None:
    """Show one dead letter with its message and traceback.

    \b
    Example:
      metawsm dlq show cmd-0193 --json
    """
    remote = app.remote
    if remote is not None:
        from metawsm.cli.remote import segment

        row = remote.get(f"/dead-letters/{segment(message_id)}")
    else:
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
    """Republish a dead message with its original id (nothing is applied twice).

    Refused (exit 1) for a purged or quarantined letter.

    \b
    Example:
      metawsm dlq redrive cmd-0193
    """
    remote = app.remote
    if remote is not None:  # operators only: the API refuses other tokens (403)
        from metawsm.cli.remote import segment

        _, result = remote.post(f"/dead-letters/{segment(message_id)}/redrive")
    else:
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
    """Mark one dead letter (or, with --all, every one) purged.

    A purged letter cannot be redriven.

    \b
    Example:
      metawsm dlq purge cmd-0193
    """
    if not message_id and not purge_all:
        raise click.UsageError("give a MESSAGE_ID or --all")
    remote = app.remote
    if remote is not None:  # operators only: the API refuses other tokens (403)
        body = {"all": True} if purge_all else {"message_id": message_id}
        count = int(remote.post("/dead-letters/purge", body)[1]["purged"])
    else:
        from metawsm.services import deadletters

        identity = acting_identity(app)
        count = deadletters.purge(
            app.container.engine, None if purge_all else message_id, identity=identity
        )
    if as_json:
        emit_json({"purged": count})
    else:
        click.echo(f"purged {count}")
