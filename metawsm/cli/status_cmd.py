"""``metawsm status``, ``metawsm watch`` and ``metawsm operator``: all from the typed snapshot.

watch exit codes (single run, on a terminal class): 0 run_done, 1 run_failed, 5 run_stopped,
6 guidance_needed. watch and operator follow until Ctrl-C (exit 0) unless --once; with --once,
--json prints one JSON array (``[]`` when there is nothing), otherwise one object per line.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import click

from metawsm.cli.context import AppContext, emit_json, pass_app, until_interrupted
from metawsm.cli.durations import Duration
from metawsm.cli.options import run_id_option
from metawsm.cli.render import paint, render_run
from metawsm.domain.snapshot import Snapshot, next_due, to_json
from metawsm.errors import UsageError
from metawsm.services import snapshot, snapshot_docs

if TYPE_CHECKING:  # each command imports what only it uses (one process per call); the loops'
    # change check reads through SQLAlchemy, a single pass does not
    from metawsm.cli.remote_follow import StreamRefresher
    from metawsm.domain.watch import Alert
    from metawsm.services.snapshot_changes import Refresher
    from metawsm.services.snapshot_reads import RunRow

POLL_S = 0.25


def _selection(kw: dict[str, Any]) -> tuple[str | None, str | None]:
    ctx = click.get_current_context()
    if ctx.get_parameter_source("run_id") == click.core.ParameterSource.DEFAULT and (
        kw.get("all_runs") or kw.get("ticket")
    ):
        kw["run_id"] = None  # METAWSM_RUN_ID is only the default when nothing else is chosen
    chosen = [k for k in ("run_id", "ticket") if kw.get(k)]
    if kw.get("all_runs") and chosen:
        raise UsageError("--all cannot be combined with --run-id or --ticket")
    if len(chosen) > 1:
        raise UsageError("give --run-id or --ticket, not both")
    return kw.get("run_id"), kw.get("ticket")


def _select_options(fn: Any) -> Any:
    fn = click.option(
        "--all", "all_runs", is_flag=True, help="Every active run (the default without a run)."
    )(fn)
    fn = click.option("--ticket", default=None, help="The runs on this ticket.")(fn)
    return run_id_option(required=False)(fn)


def _snap(
    app: AppContext,
    run_id: str | None,
    ticket: str | None,
    *,
    now: datetime | None = None,
    with_completed: bool = False,
) -> Snapshot:
    # Straight on the database driver: no SQLAlchemy, no validation library (one process per
    # call; docs/performance.md, "Snapshot at scale", session 8).
    remote = app.remote
    if remote is not None:  # the snapshot the API builds (every active run, or the chosen)
        from metawsm.domain.snapshot import from_json

        return from_json(remote.get("/status", {"run_id": run_id, "ticket": ticket}))
    now = now or datetime.now(UTC)
    with snapshot.paused_cycle_collection():
        documents = _documents(app, run_id, ticket, with_completed)
        return snapshot.snapshot_of(documents, app.settings, now)


def _documents(
    app: AppContext, run_id: str | None, ticket: str | None, with_completed: bool = False
) -> list[tuple[RunRow, list[Any]]]:
    # The runs and their documents, read in one read transaction; the documents the read made
    # are stored on its connection once the read is over (skipped when the database is busy
    # or read-only: services/snapshot_docs.py).
    fresh: list[snapshot_docs.Fresh] = []
    with app.reading(repeatable=True) as db:
        documents = snapshot.read_documents(db, run_id=run_id, ticket=ticket,
                                            with_completed=with_completed, fresh=fresh)  # fmt: skip
        snapshot_docs.keep(db.raw, db.dialect, fresh)
    return documents


@click.command("status")
@_select_options
@click.option("--json", "as_json", is_flag=True, help="Print the snapshot itself.")
@pass_app
def status(app: AppContext, /, **kw: Any) -> None:
    """Show runs: agents, pending guidance, threads, escalations and blockers with their fixes.

    --run-id (default METAWSM_RUN_ID) shows that run whatever its status; --ticket the runs on
    the ticket; --all, or nothing, every active run.

    \b
    Example:
      metawsm status --run-id run-20261128-k3f9x
    """
    run_id, ticket = _selection(kw)
    if kw["as_json"] and not sys.stdout.isatty():
        _emit_compact(app, run_id, ticket)
        return
    snap = _snap(app, run_id, ticket)
    if kw["as_json"]:
        _emit_snapshot(to_json(snap))
        return
    if not snap.runs:
        click.echo("no active runs", err=True)
    for i, run in enumerate(snap.runs):
        if i:
            click.echo("")
        for line in render_run(run):
            click.echo(line)


def _emit_snapshot(data: dict[str, Any]) -> None:
    # Indented for a person at a terminal; one compact line for a program (a pipe, a file):
    # the same JSON (README, "status").
    if sys.stdout.isatty():
        emit_json(data)
        return
    from metawsm.cli.json_text import compact

    click.echo(compact(data))


def _emit_compact(app: AppContext, run_id: str | None, ticket: str | None) -> None:
    # What programs read (agents and scripts poll it): the snapshot written as one compact line
    # (cli/snapshot_json.py; on a database straight from the runs' documents, no typed part
    # made: the same bytes), the cycle collector paused meanwhile (the document's ~40,000 dicts
    # and lists would set off full collections; none is in a cycle), and the process ended
    # without tearing its heap down, nor freeing what it read and wrote on the way out
    # (cli/context.py end_quickly).
    from metawsm.cli.context import end_quickly
    from metawsm.cli.snapshot_json import (
        compact_document,
        compact_document_from,
        encode_compact,
    )
    from metawsm.services.snapshot import paused_cycle_collection
    from metawsm.services.snapshot_parts import Clock

    with paused_cycle_collection():
        if app.remote is not None:
            held: Any = _snap(app, run_id, ticket)
            document = compact_document(held)
        else:
            now = datetime.now(UTC)
            held = _documents(app, run_id, ticket)
            document = compact_document_from(held, Clock(app.settings, now))
        text = encode_compact(document)
    out = sys.stdout.buffer
    out.write(text + b"\n")
    out.flush()
    end_quickly(held, document, text)


def notify_env(alert: Alert, snap_run: Any) -> dict[str, str]:
    """Environment handed to --notify-cmd."""
    return {
        "METAWSM_EVENT": alert.event,
        "METAWSM_MESSAGE": alert.message,
        "METAWSM_HINT": alert.hint or "",
        "METAWSM_RUN_ID": alert.run_id,
        "METAWSM_RUN_STATUS": snap_run.status,
        "METAWSM_TICKETS": ",".join(snap_run.tickets),
    }


@click.command("watch")
@_select_options
@click.option("--notify-cmd", default=None, help="Shell command run per alert (event in env).")
@click.option("--bell", is_flag=True, help="Ring the terminal bell on each alert.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON object per alert (with --once: one JSON array).",
)
@click.option(
    "--refresh",
    type=Duration(),
    default="15s",
    show_default=True,
    help="Rebuild at least this often; otherwise only when a run's data changes or an SLA tier"
    " falls due.",
)
@click.option("--once", is_flag=True, help="Classify once and exit.")
@pass_app
def watch(app: AppContext, /, **kw: Any) -> None:
    """Alert when a run's class changes (failed, stopped, guidance needed, done...), with the
    command that resolves it.

    With --run-id (default METAWSM_RUN_ID) or --ticket (its newest run), watch exits on the
    run's first terminal class; over all runs it keeps going until Ctrl-C (exit 0). A run that
    leaves the active set is classified one last time, then no longer tracked.

    \b
    Exit codes (one run): 0 run_done; 1 run_failed; 5 run_stopped; 6 guidance_needed (a
    guidance request waits); with --once, 0 unless the run is in one of those classes.

    \b
    Example:
      metawsm watch --run-id run-20261128-k3f9x --notify-cmd 'notify-send "$METAWSM_MESSAGE"'
    """
    alerts: list[dict[str, Any]] = []
    with until_interrupted():
        try:
            last = _watch(app, kw, alerts)
        except click.exceptions.Exit:  # a terminal class: its exit code, after the output
            _close_once(kw, alerts, "no alerts (every run ok, or no active run)")
            raise
        _close_once(kw, alerts, "no alerts (every run ok, or no active run)", last)


def _close_once(
    kw: dict[str, Any], collected: list[dict[str, Any]], note: str, *keep: object
) -> None:
    """With --once: the JSON array of what was collected, or the note when there was nothing;
    then the process may end without tearing its heap down, ``keep`` (the pass's snapshot)
    not freed (cli/context.py end_quickly)."""
    if not kw["once"]:
        return
    if kw["as_json"]:
        emit_json(collected)
    elif not collected:
        click.echo(note, err=True)
    from metawsm.cli.context import end_quickly

    end_quickly(*keep)


def _watch(app: AppContext, kw: dict[str, Any], alerts: list[dict[str, Any]]) -> Snapshot:
    """Classify and alert until Ctrl-C, or once (``--once``: then the pass's snapshot)."""
    from metawsm.domain.watch import WATCH_EXIT, classify

    run_id, ticket = _selection(kw)
    single = bool(run_id or ticket)
    if ticket:
        run_id = _snap(app, None, ticket).runs[0].run_id  # newest first
    last: dict[str, str] = {}
    refresher = None if kw["once"] else _refresher(app, kw["refresh"], run_id)
    out: list[str] = []  # a pass's lines, written at once (click.echo per line: ~5 us each)
    while True:
        started = time.monotonic()
        snap = _snap(app, run_id, None)
        took_s = time.monotonic() - started  # the rebuild alone, not the alerts' commands
        runs = snap.runs
        active = {r.run_id for r in runs}
        if not single:
            runs += [
                r for rid in list(last) if rid not in active for r in _snap(app, rid, None).runs
            ]
        for run in runs:
            alert = classify(run)
            if last.get(run.run_id) != alert.event and (alert.event != "ok" or run.run_id in last):
                alerts.append(_emit(alert, run, kw, out))
            last[run.run_id] = alert.event
            if single and alert.terminal:
                _write(out)
                raise click.exceptions.Exit(WATCH_EXIT[alert.event])
            if not single and run.run_id not in active:
                del last[run.run_id]
        _write(out)
        if refresher is None:
            return snap
        refresher.rebuilt(_next_due(app, snap), snap.generated_at, took_s)
        _wait_until_due(refresher)


def _refresher(
    app: AppContext, refresh_s: float, run_id: str | None = None
) -> Refresher | StreamRefresher:
    remote = app.remote
    if remote is not None:  # woken by the API's event stream, not by reading the database
        from metawsm.cli.remote_follow import StreamRefresher

        runs = _snap(app, run_id, None).runs
        after = max((r.last_event_sequence for r in runs), default=0)
        return StreamRefresher(remote, refresh_s, run_id, after)
    from metawsm.services.snapshot_changes import Refresher

    return Refresher(app.container.engine, refresh_s)


def _next_due(app: AppContext, snap: Snapshot, stale_after_s: int | None = None) -> Any:
    s = app.settings if app.remote is not None else app.container.settings
    return next_due(
        snap,
        sla_minutes=s.sla_minutes,
        human_minutes=s.sla_human_minutes,
        stale_after_s=stale_after_s,
    )


def _wait_until_due(refresher: Refresher | StreamRefresher) -> None:
    while not refresher.due():
        time.sleep(POLL_S)  # the database is polled as a condition; reacts within POLL_S


def _emit(alert: Alert, run: Any, kw: dict[str, Any], out: list[str]) -> dict[str, Any]:
    """Add the alert's lines to ``out`` (written by :func:`_write`); run ``--notify-cmd``."""
    data = {**alert._asdict(), "run_status": run.status}
    if kw["as_json"]:
        if not kw["once"]:  # --once prints them all as one array at the end
            out.append(json.dumps(data, sort_keys=True) + "\n")
    else:
        colour = "red" if alert.terminal and alert.event != "run_done" else "yellow"
        out.append(paint(f"[{alert.event}] {alert.message}", colour) + "\n")
        if alert.hint:
            out.append(f"  -> {alert.hint}\n")
    if kw["bell"]:
        out.append("\a")
    if kw["notify_cmd"]:
        import subprocess  # only for --notify-cmd (~1.5 ms of every process's start)

        _write(out)  # the alert is shown before its command runs
        subprocess.run(
            kw["notify_cmd"],
            shell=True,
            env={**os.environ, **notify_env(alert, run)},
            check=False,
            timeout=60,
        )
    return data


def _write(out: list[str]) -> None:
    """Write the lines collected in ``out`` at once (colour stripped off a terminal, as
    ``click.echo`` does), and empty it."""
    if out:
        click.echo("".join(out), nl=False)
        out.clear()


@click.command("operator")
@click.option(
    "--all", "all_runs", is_flag=True, help="Every active or completed run (the default)."
)
@run_id_option(required=False)
@click.option(
    "--mode",
    type=click.Choice(["observe", "assist", "auto"]),
    default="assist",
    show_default=True,
    help="auto executes close_ready; the others only decide.",
)
@click.option("--dry-run", is_flag=True, help="Decide and print; record and execute nothing.")
@click.option("--once", is_flag=True, help="One pass, then exit.")
@click.option(
    "--interval",
    type=Duration(),
    default="15s",
    show_default=True,
    help="Decide again at least this often; otherwise only when a run's data changes, a"
    " pending guidance request reaches an SLA tier or a run turns stale.",
)
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="One JSON object per decision (with --once: one JSON array).",
)
@pass_app
def operator(app: AppContext, /, **kw: Any) -> None:
    """Decide per run from the snapshot: escalate_guidance, escalate_blocked, close_ready,
    stale_run; decisions are recorded as events and not repeated while nothing changes.

    Without --once it decides again whenever something changes, until Ctrl-C (exit 0).

    \b
    Example:
      metawsm operator --once --mode assist
    """
    kw["ticket"] = None
    _selection(kw)
    decisions: list[dict[str, Any]] = []
    with until_interrupted():
        try:
            runs = _operate(app, kw, decisions)
        except click.exceptions.Exit:  # a terminal class: its exit code, after the output
            _close_once(kw, decisions, "no new decisions (nothing changed since the last ones)")
            raise
        _close_once(kw, decisions, "no new decisions (nothing changed since the last ones)", runs)


def _operate(app: AppContext, kw: dict[str, Any], decisions: list[dict[str, Any]]) -> list[Any]:
    """Decide and act until Ctrl-C, or once (``--once``: then the runs it decided on)."""
    from metawsm.services.operator import act_on_changed

    refresher = None if kw["once"] else _refresher(app, kw["interval"])
    stale_s = app.settings.operator_stale_run_s
    while True:
        started, now = time.monotonic(), datetime.now(UTC)
        runs, known = _operator_reads(app, kw["run_id"], now, kw["dry_run"])
        took_s = time.monotonic() - started  # the snapshot alone, not what acting wrote
        acted = act_on_changed(lambda: app.container.runtime, runs, known, mode=kw["mode"],
                               dry_run=kw["dry_run"], stale_after_s=stale_s, now=now)  # fmt: skip
        out: list[str] = []  # the pass's lines, written at once (as watch's: _write)
        for a in acted:
            if not (a.recorded or kw["dry_run"]):
                continue
            d = a.decision
            data = {**d._asdict(), "recorded": a.recorded, "executed": a.executed, "error": a.error}
            decisions.append(data)
            if kw["as_json"]:
                if not kw["once"]:
                    out.append(json.dumps(data, sort_keys=True) + "\n")
            else:
                done = " (executed)" if a.executed else ""
                out.append(f"{d.run_id} {d.intent}{done}: {d.reason}\n")
                if d.command and kw["mode"] != "observe":
                    out.append(f"  -> {d.command}\n")
        _write(out)
        if refresher is None:
            return runs
        # The runs as decided from (no threads: no thread's SLA tier changes a decision).
        due = _next_due(app, Snapshot(generated_at=now, runs=runs), stale_s)
        refresher.rebuilt(due, now, took_s)
        _wait_until_due(refresher)


def _operator_reads(
    app: AppContext, run_id: str | None, now: datetime, dry_run: bool
) -> tuple[list[Any], dict[str, str]]:
    """The run (or every active and completed run) and, unless ``dry_run``, the fingerprint of
    each one's last recorded decision: in one read transaction, on the driver."""
    from metawsm.domain.runs import RunStatus
    from metawsm.services.operator import fingerprints_in
    from metawsm.services.snapshot_reads import Scope

    fresh: list[snapshot_docs.Fresh] = []
    with app.reading(repeatable=True) as db:
        snap = snapshot.read(db, app.settings, run_id=run_id, now=now, with_completed=True,
                             fresh=fresh, for_decisions=True)  # fmt: skip
        found: dict[str, str] = {}
        if not dry_run and snap.runs:
            ids = tuple(r.run_id for r in snap.runs)
            statuses = (*snapshot.ACTIVE_STATUSES, RunStatus.COMPLETED.value)
            scope = Scope(ids) if run_id else Scope(ids, statuses)  # all: by subquery, no ids
            found = fingerprints_in(db, scope)
        snapshot_docs.keep(db.raw, db.dialect, fresh)
    return snap.runs, found
