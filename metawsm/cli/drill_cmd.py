"""``metawsm drill KIND``: an incident drill on a scratch stack of its own.

Exit codes: 0 the drill passed (nothing lost, nothing applied twice, the read models equal the
fold of the log); 1 it failed, or it was aborted (``DrillAborted``: the stack did not start or
the fault could not be injected) or interrupted; 2 usage.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path
from types import FrameType

import click

from metawsm.cli.context import emit_json
from metawsm.cli.durations import Duration
from metawsm.errors import EXIT_FAILED, EXIT_OK

KINDS = ["redis-outage", "redis-stall", "worker-kill", "redis-flush", "replay"]
DEFECTS = ["lost", "duplicated"]


def _postgres_server(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and not value.startswith(("postgresql://", "postgres://")):
        raise click.BadParameter(
            "must be a postgresql:// URL of a server (a scratch database is"
            " created there and dropped after)"
        )
    return value


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM cleans up as Ctrl-C does


@click.command("drill")
@click.argument("kind", type=click.Choice(KINDS))
@click.option(
    "--duration", type=Duration(5, 86_400, open_min=False), default="60s", show_default=True,
    help="How long the load runs (60, 60s, 5m, 1h); the fault starts 30% in and lasts 20% of"
    " it (2-30 s).",
)  # fmt: skip
@click.option(
    "--rate", type=click.FloatRange(1, 1000), default=20.0, show_default=True,
    help="Commands submitted per second.",
)  # fmt: skip
@click.option(
    "--database", metavar="URL", default=None, callback=_postgres_server,
    help="A PostgreSQL server: the drill creates a scratch database there and drops it after"
    " (default: a SQLite file in a temporary directory).",
)  # fmt: skip
@click.option(
    "--logs", "logs_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
    help="Copy the logs of worker, beat and Redis into this directory before cleaning up.",
)  # fmt: skip
@click.option("--json", "as_json", is_flag=True, help="Print the report as one JSON object.")
@click.option("--inject-defect", type=click.Choice(DEFECTS), hidden=True)
def drill(
    kind: str,
    duration: float,
    rate: float,
    database: str | None,
    logs_dir: Path | None,
    as_json: bool,
    inject_defect: str | None,
) -> int:
    """Run an incident drill on a scratch stack under load; exit 1 when a command was lost or
    applied twice.

    KIND is the fault. The stack is a private Redis, a scratch database and real worker and beat
    processes; a steady mixed load runs through the fault, then the drill waits until all has
    settled and counts from the database.

    \b
    redis-outage  stop Redis, start it again on the same port
    redis-stall   SIGSTOP Redis, then SIGCONT
    worker-kill   SIGKILL the worker supervisor (restarted), then a worker mid-task
    redis-flush   FLUSHALL
    replay        drop the read models and rebuild them under load

    Exit codes: 0 passed; 1 something was lost or applied twice, the read models differ from the
    log, or the drill was aborted (DrillAborted: a part did not start) or interrupted; 2 usage.

    \b
    Example:
      metawsm drill redis-outage --duration 1m --rate 20 --json
    """
    from metawsm.drills.report import render_text
    from metawsm.drills.runner import run_drill

    signal.signal(signal.SIGTERM, _interrupt)

    def say(line: str) -> None:
        click.echo(f"drill: {line}", err=True)

    try:
        report = run_drill(kind, duration, rate, database, inject_defect, say, logs_dir)
    except KeyboardInterrupt:
        click.echo("drill: interrupted; every process and temporary directory removed", err=True)
        sys.exit(EXIT_FAILED)
    if as_json:
        emit_json(report.as_dict())
    else:
        click.echo(render_text(report))
    return EXIT_OK if report.ok else EXIT_FAILED
