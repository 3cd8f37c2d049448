"""``metawsm projections rebuild [--check]``: rebuild read models from the event log."""

from __future__ import annotations

import sys
import time
from typing import TextIO

import click

from metawsm.cli.context import AppContext, emit_json, pass_app
from metawsm.errors import EXIT_FAILED
from metawsm.services.rebuild import rebuild

PROGRESS_EVERY_S = 0.2


@click.group("projections")
def projections() -> None:
    """Read models: rebuild and check.

    \b
    Example:
      metawsm projections rebuild --check
    """


@projections.command("rebuild")
@click.option("--check", is_flag=True, help="Only compare; exit 1 when live models differ.")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def rebuild_cmd(app: AppContext, check: bool, as_json: bool) -> None:
    """Rebuild every read model from forum_events; report differences from the live ones.

    The log is read in chunks, so memory stays bounded; on a terminal, progress is shown on
    stderr while events are folded. With --check it only compares, and exits 1 when a live
    model differs.

    \b
    Example:
      metawsm projections rebuild --json
    """
    progress = ProgressLine(sys.stderr) if sys.stderr.isatty() else None
    report = rebuild(app.container.engine, check=check, progress=progress)
    if progress is not None:
        progress.clear()
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


class ProgressLine:
    """One self-overwriting line on a terminal: events folded, share of the log, rate."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.started = self.shown = time.monotonic()

    def __call__(self, events: int, last_sequence: int) -> None:
        """Show the progress, at most every PROGRESS_EVERY_S seconds."""
        now = time.monotonic()
        if now - self.shown < PROGRESS_EVERY_S:
            return
        self.shown = now
        share = f" of ~{last_sequence:,}" if last_sequence else ""
        rate = events / max(now - self.started, 1e-9)
        self.stream.write(f"\rfolding events: {events:,}{share} ({rate:,.0f}/s)\x1b[K")
        self.stream.flush()

    def clear(self) -> None:
        """Erase the line before the result is printed."""
        self.stream.write("\r\x1b[K")
        self.stream.flush()
