"""The ``metawsm`` command line: an entrypoint that parses, validates, submits and renders.

Exit codes (every command):
  0  ok
  1  rejected or failed (the reason is printed on stderr)
  2  usage error or invalid setting (nothing was changed)
  3  broker or database unreachable, or database schema not at head (says which, and where)
  4  timed out waiting for an outcome
  5  the run stopped while waiting
"""

from __future__ import annotations

import sys
from typing import Any

import click

import metawsm
from metawsm.cli.context import AppContext, render_error
from metawsm.cli.lazy import LazyCommand, LazyGroup
from metawsm.errors import MetawsmError

HELP = __doc__

# Every top-level command: where it lives and its summary for ``--help``. A command's module is
# imported only when the command runs (metawsm.cli.lazy); tests/unit/test_cli_lazy.py fails
# when an entry differs from the command it names.
COMMANDS = {
    "beat": LazyCommand(
        "metawsm.cli.process_cmd:beat",
        "Start the single beat: outbox drain, reconciliation, SLA escalation.",
    ),
    "bootstrap": LazyCommand(
        "metawsm.cli.run_cmd:bootstrap",
        "Create a bootstrap run with its brief (flags required when stdin is not a terminal).",
    ),
    "close": LazyCommand(
        "metawsm.cli.run_cmd:close",
        "Close a completed run whose close gates all pass (see `metawsm run why`).",
    ),
    "config": LazyCommand("metawsm.cli.config_cmd:config_group", "Inspect configuration."),
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
        "``metawsm forum``: write (ask, answer, post, assign, state, priority, close) and read.",
        subcommands={"signal": "metawsm.cli.signal_cmd:signal"},
    ),
    "health": LazyCommand(
        "metawsm.cli.health_cmd:health",
        "Check database, schema, broker, workers per role, beat, outbox, projection, dead letters.",
    ),
    "metrics": LazyCommand(
        "metawsm.cli.metrics_cmd:metrics",
        "Prometheus metrics and health endpoints (docs/metrics.md).",
    ),
    "migrate": LazyCommand(
        "metawsm.cli.migrate_cmd:migrate", "One-off data migrations into the pipeline."
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
        "Show runs: rendered from the typed snapshot only (--json prints the snapshot).",
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
        "Follow the event log and alert when a run's class changes, with the fixing command.",
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
    ctx.obj = AppContext()


def main(argv: list[str] | None = None) -> Any:
    """Console-script entry: run the CLI, turning metawsm errors into documented exit codes."""
    try:
        result = cli.main(args=argv, standalone_mode=False)
        if isinstance(result, int) and result != 0:
            sys.exit(result)
        return result
    except click.exceptions.Abort:
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
