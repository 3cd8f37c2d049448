"""``metawsm command show COMMAND_ID``: the outcome of a command, looked up later.

A write with ``--no-wait`` returns once its command is accepted; this is how its outcome is
read afterwards (``--wait``: waited for, as the write would have).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import click

from metawsm.cli.context import AppContext, pass_app
from metawsm.cli.durations import Duration
from metawsm.errors import EXIT_FAILED, WaitTimeout

if TYPE_CHECKING:
    from metawsm.services.accept import Outcome


@click.group("command")
def command() -> None:
    """Commands sent by the writes: look up their outcome.

    \b
    Example:
      metawsm command show cmd-0193 --wait
    """


@command.command("show")
@click.argument("command_id")
@click.option(
    "--wait", is_flag=True, help="Wait until it is applied, rejected or dead (exit as the write)."
)
@click.option(
    "--timeout",
    type=Duration(),
    default=None,
    show_default="$METAWSM_WAIT_TIMEOUT_S, 30s",
    help="How long --wait waits: 30, 30s, 5m or 1h.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
@pass_app
def show(
    app: AppContext, command_id: str, wait: bool, timeout: float | None, as_json: bool
) -> None:
    """Show where a command stands: accepted, applied, rejected or dead.

    Without --wait it is a read: exit 0 whatever the status (1 for an unknown id). With --wait
    it exits as the write would have: 0 applied, 1 rejected or dead, 4 still in flight after
    --timeout.

    \b
    Example:
      metawsm command show cmd-0193 --wait --json
    """
    from metawsm.cli.options import render_outcome
    from metawsm.services.record_reads import command_outcome
    from metawsm.services.waiting import wait_until_final

    remote = app.remote

    def read() -> Outcome:
        if remote is not None:
            from metawsm.cli.remote import segment
            from metawsm.cli.remote_writes import outcome_of

            return outcome_of(remote.get(f"/commands/{segment(command_id)}"))
        with app.reading() as db:
            return command_outcome(db, command_id)

    outcome = read()
    if wait:
        limit = timeout if timeout is not None else app.settings.wait_timeout_s
        try:
            outcome = wait_until_final(read, command_id, limit)
        except WaitTimeout:
            render_outcome(read(), as_json)
            raise
    render_outcome(outcome, as_json)
    if wait and outcome.status in ("rejected", "dead"):
        raise click.exceptions.Exit(EXIT_FAILED)
