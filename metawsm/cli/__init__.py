"""metawsm: the control plane through which coding agents, operators and humans coordinate
work on tickets.

Settings come from METAWSM_* variables or a .env file (see them with metawsm config show). The
database is METAWSM_DATABASE_URL, else the nearest .metawsm/metawsm.db found walking up from
the current directory (as git finds its repository), else .metawsm/metawsm.db here, which only
metawsm db upgrade and metawsm up create.

With METAWSM_API_URL and METAWSM_TOKEN set, forum, status, watch, close, run list, run why, dlq
and command show talk to the HTTP API instead (metawsm api): no database or Redis needed here.

\b
Exit codes (every command; a command's own --help says where it differs):
  0    ok
  1    rejected or failed (the reason is on stderr)
  2    usage error or invalid setting (nothing was changed)
  3    broker or database unreachable, no database, or its schema not at head
  4    timed out waiting for an outcome
  5    the run stopped while waiting (forum signal --wait)
  6    watch only: a guidance request waits (guidance_needed)
  130  interrupted (Ctrl-C); what follows until Ctrl-C (forum events --follow,
       watch, operator) ends with 0 instead

\b
Example:
  metawsm forum list --json
"""

from __future__ import annotations

import sys
from typing import Any

import click

import metawsm
from metawsm.cli.context import AppContext, render_error
from metawsm.cli.lazy import LazyCommand, LazyGroup
from metawsm.errors import EXIT_INTERRUPTED, MetawsmError

HELP = __doc__

# Every top-level command: where it lives and its summary for ``--help``. A command's module is
# imported only when the command runs (metawsm.cli.lazy); tests/unit/test_cli_lazy.py fails
# when an entry differs from the command it names.
COMMANDS = {
    "api": LazyCommand(
        "metawsm.cli.api_cmd:api",
        "Serve the HTTP API and the live event stream (every endpoint but health and readiness"
        " needs a bearer token: metawsm token create).",
    ),
    "beat": LazyCommand(
        "metawsm.cli.process_cmd:beat",
        "Start the single beat: outbox drain, reconciliation, SLA escalation.",
    ),
    "bootstrap": LazyCommand(
        "metawsm.cli.run_cmd:bootstrap",
        "Deprecated: use metawsm run create --mode bootstrap.",
        hidden=True,
    ),
    "close": LazyCommand(
        "metawsm.cli.run_cmd:close",
        "Close a completed run whose close gates all pass (see metawsm run why).",
    ),
    "command": LazyCommand(
        "metawsm.cli.command_cmd:command", "Commands sent by the writes: look up their outcome."
    ),
    "config": LazyCommand(
        "metawsm.cli.config_cmd:config_group",
        "Show the effective settings and where the database was found.",
    ),
    "db": LazyCommand(
        "metawsm.cli.db_cmd:db_group",
        "Migrate the database schema (Alembic owns it) and check it against the models.",
    ),
    "demo": LazyCommand(
        "metawsm.cli.demo_cmd:demo",
        "Play a bootstrap story against the running stack, printing each command and its output.",
    ),
    "drill": LazyCommand(
        "metawsm.cli.drill_cmd:drill",
        "Run an incident drill on a scratch stack under load; exit 1 when a command was lost or"
        " applied twice.",
    ),
    "dlq": LazyCommand("metawsm.cli.dlq_cmd:dlq", "Dead letters: messages that failed for good."),
    "flower": LazyCommand(
        "metawsm.cli.process_cmd:flower",
        "Start Flower (queue lag, failures) behind basic auth, on loopback by default.",
    ),
    "forum": LazyCommand(
        "metawsm.cli.forum_cmd:forum",
        "Forum threads: questions on tickets that agents ask and operators and humans answer.",
        subcommands={
            "signal": "metawsm.cli.signal_cmd:signal",
            **{
                name: f"metawsm.cli.forum_read_cmd:{attribute}"
                for name, attribute in (
                    ("list", "list_"),
                    ("search", "search"),
                    ("thread", "thread"),
                    ("seen", "seen"),
                    ("events", "events"),
                    ("watch", "watch"),
                )
            },
        },
    ),
    "health": LazyCommand(
        "metawsm.cli.health_cmd:health",
        "Check database, schema, broker, workers per role, beat, outbox, projection, dead letters.",
    ),
    "metrics": LazyCommand(
        "metawsm.cli.metrics_cmd:metrics",
        "Prometheus metrics and health endpoints (docs/metrics.md).",
    ),
    "import": LazyCommand(
        "metawsm.cli.import_cmd:import_group",
        "Bring data from before the cutover into the pipeline (legacy signal files).",
    ),
    "migrate": LazyCommand(
        "metawsm.cli.import_cmd:migrate", "Deprecated: use metawsm import.", hidden=True
    ),
    "operator": LazyCommand(
        "metawsm.cli.status_cmd:operator",
        "Decide per run from the snapshot: escalate_guidance, escalate_blocked, close_ready,"
        " stale_run; decisions are recorded as events and not repeated while nothing changes.",
    ),
    "projections": LazyCommand(
        "metawsm.cli.projections_cmd:projections", "Read models: rebuild and check."
    ),
    "run": LazyCommand("metawsm.cli.run_cmd:run", "Runs of agents on tickets."),
    "schema": LazyCommand(
        "metawsm.cli.schema_cmd:schema_cmd",
        "Print the JSON Schema of message NAME, or list the message names.",
    ),
    "status": LazyCommand(
        "metawsm.cli.status_cmd:status",
        "Show runs: agents, pending guidance, threads, escalations and blockers with their fixes.",
    ),
    "token": LazyCommand(
        "metawsm.cli.token_cmd:token",
        "Bearer tokens: one per actor; the API and the CLI act as the identity a token proves.",
    ),
    "up": LazyCommand(
        "metawsm.cli.up_cmd:up",
        "Start the local stack: migrate, ensure Redis, run worker, beat and Flower until Ctrl-C.",
    ),
    "watch": LazyCommand(
        "metawsm.cli.status_cmd:watch",
        "Alert when a run's class changes (failed, stopped, guidance needed, done...), with the"
        " command that resolves it.",
    ),
    "worker": LazyCommand(
        "metawsm.cli.process_cmd:worker", "Start a Celery worker on the queues of ROLE."
    ),
}


@click.group(
    cls=LazyGroup,
    lazy_commands=COMMANDS,
    help=HELP,
    context_settings={"help_option_names": ["-h", "--help"]},
)
# The version of this package itself: importlib.metadata would cost more than the whole rest
# of ``metawsm --version`` (tests/unit/test_cli_lazy.py checks the installed metadata agrees).
@click.version_option(version=metawsm.__version__)
@click.pass_context
def cli(ctx: click.Context) -> None:
    """metawsm control plane."""
    from metawsm.startup import resume_collection

    resume_collection()  # the command is imported: its start-up heap frozen, collection resumed
    ctx.obj = AppContext()
    ctx.call_on_close(ctx.obj.close)


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry: run the CLI, turning metawsm errors into documented exit codes.

    The program is called ``metawsm`` however it was started (``python -m metawsm`` too). Ctrl-C
    is exit 130 with one word on stderr; the commands that follow until interrupted
    (``forum events --follow``, ``watch``, ``operator``) end quietly with 0 instead.
    """
    try:
        result = cli.main(args=argv, prog_name="metawsm", standalone_mode=False)
        if isinstance(result, int) and result != 0:
            sys.exit(result)
        return result
    except click.exceptions.Abort as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):
            click.echo("interrupted", err=True)
            sys.exit(EXIT_INTERRUPTED)
        click.echo("aborted", err=True)
        sys.exit(1)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except MetawsmError as exc:
        _json_error(exc, sys.argv[1:] if argv is None else argv)
        render_error(exc)
        sys.exit(exc.exit_code)


def _json_error(exc: MetawsmError, argv: list[str]) -> None:
    """With ``--json``, a refusal that has a stable code (``forbidden``, ``unauthenticated``)
    is also printed on stdout as ``{"error": {"code", "rule"|"reason", "message"}}``."""
    code = getattr(exc, "code", None)
    if code is None or "--json" not in argv:
        return
    from metawsm.cli.context import emit_json

    error: dict[str, str] = {"code": str(code), "message": str(exc)}
    for detail in ("rule", "reason"):
        if isinstance(getattr(exc, detail, None), str):
            error[detail] = getattr(exc, detail)
    emit_json({"error": error})
