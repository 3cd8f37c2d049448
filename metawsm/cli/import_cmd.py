"""``metawsm import legacy-signals``: import pre-cutover file signals as control signals.

(``metawsm migrate``, its old name, still works for one release; ``metawsm db upgrade`` is what
migrates the schema.)

The files are only read (never written, moved or deleted); each accepted file becomes control
signals of the run, submitted in order through the pipeline under deterministic command ids, so
importing again changes nothing. Skipped files are listed with their reason; they are not
failures.

Exit codes: 0 nothing failed (skips are listed; a dry run always), 1 a signal was rejected or
dead-lettered, 2 usage (a root that does not exist, an --agent-name not in the run),
3 unreachable, 4 timed out waiting for an outcome (the remaining signals were not submitted; run
the import again).
"""

from __future__ import annotations

from pathlib import Path

import click

from metawsm.cli.aliases import deprecated_alias
from metawsm.cli.context import AppContext, emit_json, pass_app
from metawsm.cli.options import run_id_option
from metawsm.errors import EXIT_FAILED, EXIT_TIMEOUT
from metawsm.services import legacy


@click.group("import")
def import_group() -> None:
    """Bring data from before the cutover into the pipeline (legacy signal files).

    \b
    Example:
      metawsm import legacy-signals --run-id run-20261128-k3f9x --root ../workspace --dry-run
    """


@import_group.command("legacy-signals")
@click.option(
    "--root",
    "roots",
    multiple=True,
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A workspace or doc repo whose .metawsm/ holds legacy signal files (or that .metawsm/"
    " itself). Repeat for more; for each agent and file kind the first root wins.",
)
@run_id_option(required=True)
@click.option(
    "--agent-name",
    default=None,
    help="Agent of the files that name none (default: the run's only agent).",
)
@click.option("--dry-run", is_flag=True, help="Check the files and print the plan; submit nothing.")
@click.option(
    "--json", "as_json", is_flag=True, help='Print {"imported": [...], "skipped": [...]}.'
)
@pass_app
def legacy_signals(
    app: AppContext,
    /,
    roots: tuple[Path, ...],
    run_id: str,
    agent_name: str | None,
    dry_run: bool,
    as_json: bool,
) -> None:
    """Import the legacy signal files of a run's agents as control signals of the run.

    The files are only read. Importing again submits nothing new.

    \b
    Exit codes: 0 nothing failed (skipped files are listed, not failures); 1 a signal was
    rejected or dead-lettered; 2 usage; 3 unreachable; 4 timed out waiting (run it again).

    \b
    Example:
      metawsm import legacy-signals --run-id run-20261128-k3f9x --root ../workspace --json
    """
    from metawsm.cli.acting import acting_identity
    from metawsm.services.authorization import require_role

    # The import replays agents' and operators' signals as they were: an operator's job.
    require_role(acting_identity(app), ("operator",), "imports_are_for_operators", "import signals")
    c = app.container
    scope = legacy.run_scope(c.engine, run_id, agent_name)
    plan = legacy.plan_import(legacy.read_roots(roots), scope)
    report = legacy.import_legacy(c.runtime, plan, dry_run=dry_run)
    if as_json:
        emit_json(report.as_dict())
    else:
        _render(report, dry_run)
    for item in report.imported:
        if item.outcome in (*legacy.FAILED_OUTCOMES, "timeout"):
            click.echo(f"{item.outcome}: {item.signal.path}: {item.reason}", err=True)
    if report.timed_out:
        raise click.exceptions.Exit(EXIT_TIMEOUT)
    if report.failed and not dry_run:
        raise click.exceptions.Exit(EXIT_FAILED)


def _render(report: legacy.Report, dry_run: bool) -> None:
    title = "plan (dry run; nothing submitted)" if dry_run else "imported"
    click.echo(f"{title}: {len(report.imported)} signal(s)")
    for item in report.imported:
        already = " (already imported)" if item.already_imported else ""
        thread = f" thread={item.thread_id}" if item.thread_id else ""
        click.echo(
            f"  {item.signal.path} -> {item.signal.control_type} -> {item.outcome}{already}"
            f" [agent={item.signal.agent_name} command={item.signal.command_id}{thread}]"
        )
    click.echo(f"skipped: {len(report.skipped)} file(s)")
    for skip in report.skipped:
        click.echo(f"  {skip.path} -> {skip.reason}")


migrate = deprecated_alias(import_group, "migrate", "metawsm migrate", "metawsm import")
