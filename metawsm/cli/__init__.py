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

from metawsm.cli.context import AppContext, render_error
from metawsm.errors import MetawsmError

HELP = __doc__


@click.group(help=HELP, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="metawsm")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """metawsm control plane."""
    ctx.obj = AppContext()


def _register() -> None:
    # Each module owns one command group (or a few top-level commands) and registers it.
    import importlib

    for name in (
        "config_cmd",
        "db_cmd",
        "schema_cmd",
        "forum_cmd",
        "signal_cmd",
        "dlq_cmd",
        "process_cmd",
        "projections_cmd",
        "run_cmd",
        "status_cmd",
        "migrate_cmd",
        "up_cmd",
    ):
        try:
            module = importlib.import_module(f"metawsm.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"metawsm.cli.{name}":
                raise
            continue
        module.register(cli)


_register()


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
        render_error(exc)
        sys.exit(exc.exit_code)
