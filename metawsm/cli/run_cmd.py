"""Runs: ``metawsm run create|list|show|stop|resume|why|iterate|agent-status``, ``metawsm
bootstrap`` and ``metawsm close``.

Exit codes: 0 ok, 1 rejected (e.g. an illegal transition or an unmet close gate), 2 usage.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from metawsm.cli.context import AppContext, emit_json, pass_app
from metawsm.cli.options import default_actor_name, run_write
from metawsm.errors import EXIT_FAILED, Forbidden, Rejected

if TYPE_CHECKING:  # the write path and the gates load when a command uses them: reads do not
    from metawsm.identity import Identity
    from metawsm.services.runs import BriefInput


def _actor(app: AppContext, kw: dict[str, Any]) -> Identity:
    """Who acts: the METAWSM_TOKEN holder, or the local identity of the actor flags."""
    from metawsm.cli.acting import acting_identity

    return acting_identity(app, kw.get("actor_type"), kw.get("actor_name"))


def _actor_opts(fn: Any) -> Any:
    fn = click.option("--actor-name", default=default_actor_name)(fn)
    return click.option(
        "--actor-type",
        type=click.Choice(["operator", "human", "system", "agent"]),
        default="operator",
        show_default=True,
    )(fn)


@click.group("run")
def run() -> None:
    """Runs of agents on tickets."""


@run.command("create")
@click.option("--ticket", "tickets", multiple=True, required=True, help="Repeat for more.")
@click.option("--agent", "agents", multiple=True, required=True, help="Repeat for more.")
@click.option("--mode", type=click.Choice(["run", "bootstrap"]), default="run", show_default=True)
@click.option("--goal")
@click.option("--scope")
@click.option("--done-criteria")
@click.option("--constraints")
@click.option("--merge-intent", default="default", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@_actor_opts
@pass_app
def create(app: AppContext, /, **kw: Any) -> None:
    """Create a run; --mode bootstrap also needs the brief (asked for on a terminal)."""
    brief = _brief(kw) if kw["mode"] == "bootstrap" else None
    _create(app, kw, brief)


@click.command("bootstrap")
@click.option("--ticket", required=True)
@click.option("--agent", "agents", multiple=True, required=True, help="Repeat for more.")
@click.option("--goal")
@click.option("--scope")
@click.option("--done-criteria")
@click.option("--constraints")
@click.option("--merge-intent", default="default", show_default=True)
@click.option("--json", "as_json", is_flag=True)
@_actor_opts
@pass_app
def bootstrap(app: AppContext, /, **kw: Any) -> None:
    """Create a bootstrap run with its brief (flags required when stdin is not a terminal)."""
    kw["tickets"], kw["mode"] = (kw["ticket"],), "bootstrap"
    _create(app, kw, _brief(kw))


BRIEF_FIELDS = ("goal", "scope", "done_criteria", "constraints")


def _brief(kw: dict[str, Any]) -> BriefInput:
    from metawsm.services import runs

    values: dict[str, str] = {}
    interactive = sys.stdin.isatty()
    for name in BRIEF_FIELDS:
        value = (kw.get(name) or "").strip()
        while not value and interactive:
            value = click.prompt(name.replace("_", " ").capitalize(), default="").strip()
        if not value:
            raise click.UsageError(
                f"--{name.replace('_', '-')} is required (stdin is not a terminal)"
            )
        values[name] = value
    return runs.BriefInput(merge_intent=kw.get("merge_intent") or "default", **values)


def _create(app: AppContext, kw: dict[str, Any], brief: BriefInput | None) -> None:
    from metawsm.services import runs

    run_id = runs.create_run(
        app.container.runtime,
        tickets=list(kw["tickets"]),
        agents=list(kw["agents"]),
        mode=kw["mode"],
        brief=brief,
        actor=_actor(app, kw),
    )
    _show_one(app, run_id, kw["as_json"])


@run.command("list")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def list_(app: AppContext, as_json: bool) -> None:
    """List runs, newest first."""
    from metawsm.services import record_reads

    with app.reading() as db:
        rows = record_reads.run_rows(db)
    if as_json:
        emit_json({"runs": rows})
        return
    for r in rows:
        agents = ",".join(a["agent_name"] for a in r["agents"])
        click.echo(
            f"{r['run_id']} {r['status']} mode={r['mode']} tickets={','.join(r['tickets'])}"
            f" agents={agents}"
        )


@run.command("show")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def show(app: AppContext, run_id: str, as_json: bool) -> None:
    """Show a run with its agents, brief and status history."""
    _show_one(app, run_id, as_json)


def _show_one(app: AppContext, run_id: str, as_json: bool) -> None:
    from metawsm.services import record_reads

    with app.reading() as db:
        row = record_reads.run_rows(db, run_id)[0]
        row["history"] = record_reads.run_history(db, run_id)
    if as_json:
        emit_json(row)
        return
    click.echo(
        f"run={row['run_id']} status={row['status']} mode={row['mode']}"
        f" tickets={','.join(row['tickets'])} epoch={row['control_epoch']}"
    )
    for a in row["agents"]:
        click.echo(
            f"  agent={a['agent_name']} status={a['status']} last_signal={a['last_signal_at']}"
        )
    for h in row["history"]:
        click.echo(f"  {h['at']} {h['from_status']} -> {h['to_status']}: {h['reason']}")


@run.command("stop")
@click.argument("run_id")
@_actor_opts
@pass_app
def stop(app: AppContext, /, run_id: str, **kw: Any) -> None:
    """Stop a run."""
    from metawsm.services import lifecycle

    status = lifecycle.stop_run(app.container.runtime, run_id, _actor(app, kw))
    click.echo(f"run {run_id} {status}")


@run.command("resume")
@click.argument("run_id")
@_actor_opts
@pass_app
def resume(app: AppContext, /, run_id: str, **kw: Any) -> None:
    """Resume a stopped, paused or failed run."""
    from metawsm.services import lifecycle

    status = lifecycle.resume_run(app.container.runtime, run_id, _actor(app, kw))
    click.echo(f"run {run_id} {status}")


@run.command("agent-status")
@click.argument("run_id")
@click.option("--agent-name", required=True)
@click.option(
    "--status", type=click.Choice(["running", "idle", "stalled", "failed"]), required=True
)
@_actor_opts
@pass_app
def agent_status(app: AppContext, /, run_id: str, agent_name: str, status: str, **kw: Any) -> None:
    """Report an agent's status; a failed agent fails its running run."""
    from metawsm.services import lifecycle

    run_status = lifecycle.set_agent_status(
        app.container.runtime, run_id, agent_name, status, _actor(app, kw)
    )
    click.echo(f"agent {agent_name} {status}; run {run_id} {run_status}")


@run.command("why")
@click.argument("run_id")
@click.option("--json", "as_json", is_flag=True)
@pass_app
def why(app: AppContext, run_id: str, as_json: bool) -> None:
    """List every close gate that is not met, each with the command that would meet it."""
    from metawsm.services import gates

    summary, unmet = gates.unmet(app.container.engine, run_id)
    if as_json:
        emit_json({**summary, "unmet": [g.as_dict() for g in unmet]})
        return
    if not unmet:
        click.echo(f"run {run_id} ({summary['status']}): every close gate is met")
        return
    click.echo(f"run {run_id} ({summary['status']}): {len(unmet)} gate(s) not met")
    for g in unmet:
        click.echo(f"- {g.reason}")
        if g.fix:
            click.echo(f"    fix: {g.fix}")


@run.command("iterate")
@click.argument("run_id")
@click.option("--feedback", required=True)
@_actor_opts
@pass_app
def iterate(app: AppContext, /, run_id: str, feedback: str, **kw: Any) -> None:
    """Start a new control epoch with feedback posted on every control thread."""
    from metawsm.services import lifecycle

    if not feedback.strip():
        raise click.UsageError("--feedback is required (blank after trimming)")
    status, epoch, threads = lifecycle.iterate_run(
        app.container.runtime, run_id, feedback, _actor(app, kw)
    )
    for thread_id in threads:
        run_write(
            app,
            "add_post",
            {"thread_id": thread_id, "body": f"Operator feedback: {feedback}"},
            actor_type=_actor(app, kw).actor_type,
            actor_name=_actor(app, kw).actor_name,
            wait=None,
            timeout=None,
            as_json=False,
            quiet=True,
        )
    click.echo(f"run {run_id} {status}; control epoch {epoch}")


@click.command("close")
@click.option("--run-id", required=True)
@click.option("--dry-run", is_flag=True, help="Check the gates; change nothing.")
@click.option("--json", "as_json", is_flag=True)
@_actor_opts
@pass_app
def close(app: AppContext, /, run_id: str, dry_run: bool, as_json: bool, **kw: Any) -> None:
    """Close a completed run whose close gates all pass (see `metawsm run why`)."""
    from metawsm.services import gates

    c = app.container
    try:
        status = gates.close_run(c.runtime, run_id, dry_run=dry_run, actor=_actor(app, kw))
    except Forbidden:
        raise  # a role rule, not a gate: the error names the rule
    except Rejected as exc:
        if as_json:
            _, unmet = gates.unmet(c.engine, run_id)
            emit_json({"run_id": run_id, "closed": False, "unmet": [g.as_dict() for g in unmet]})
        click.echo(f"error: {exc}", err=True)
        click.echo(f"see: metawsm run why {run_id}", err=True)
        raise click.exceptions.Exit(EXIT_FAILED) from None
    if as_json:
        emit_json(
            {"run_id": run_id, "closed": status == "closed", "dry_run": dry_run, "status": status}
        )
    elif dry_run:
        click.echo(f"run {run_id}: every close gate passes (dry run; nothing changed)")
    else:
        click.echo(f"run {run_id} {status}")
