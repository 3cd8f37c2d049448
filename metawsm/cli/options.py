"""Shared click options and the submit-and-wait flow of write commands."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar, cast

import click

from metawsm.cli.context import AppContext, emit_json, usage_from_validation
from metawsm.cli.durations import Duration
from metawsm.errors import EXIT_FAILED, EXIT_UNREACHABLE, MetawsmError, UsageError, WaitTimeout
from metawsm.settings import env_default

if TYPE_CHECKING:  # the write path is imported when a write runs, not with every command
    from metawsm.identity import Identity
    from metawsm.services.accept import Acceptable, Outcome

F = TypeVar("F", bound=Callable[..., Any])
ACTOR_TYPES = click.Choice(["agent", "operator", "human", "system"], case_sensitive=False)


ACTOR_NAME_DEFAULT = "$METAWSM_ACTOR_NAME, else (agents) $METAWSM_AGENT_NAME, else login name"


def default_actor_name(actor_type: str = "agent") -> str:
    """Who acts when --actor-name is not given: METAWSM_ACTOR_NAME, else for an agent
    METAWSM_AGENT_NAME, else the login name.

    An agent's name is never the default of an operator, human or system actor: an agent's
    environment (METAWSM_AGENT_NAME) must not make it look as if an operator answered.
    """
    own = env_default("ACTOR_NAME")
    if own:
        return own
    import getpass  # only here: its terminal modules are of no use to most commands

    if actor_type.lower() == "agent":
        return env_default("AGENT_NAME") or getpass.getuser()
    return getpass.getuser()


def actor_name(actor_type: str, given: str | None) -> str:
    """The --actor-name given, else the default for ``actor_type`` (:func:`default_actor_name`)."""
    return given if given is not None else default_actor_name(actor_type)


def actor_options(default_type: str) -> Callable[[F], F]:
    """--actor-type (with a per-command default) and --actor-name (its default follows the type)."""

    def wrap(fn: F) -> F:
        fn = click.option(
            "--actor-name",
            default=None,
            show_default=ACTOR_NAME_DEFAULT,
            help="Who acts.",
        )(fn)
        return click.option(
            "--actor-type",
            type=ACTOR_TYPES,
            default=default_type,
            show_default=True,
            help="The role of who acts.",
        )(fn)

    return wrap


class _LegacyRunArgument(click.Argument):
    """The RUN_ID argument of the previous release: still read, never shown in the usage."""

    def get_usage_pieces(self, ctx: click.Context) -> list[str]:
        """Nothing: the usage shows --run-id only."""
        return []


def run_id_option(*, required: bool, positional: bool = False) -> Callable[[F], F]:
    """``--run-id`` with METAWSM_RUN_ID as its default: how every command takes a run.

    ``positional``: the command took the run as an argument before; it still does for one
    release, with a deprecation note on stderr. ``required``: no run given at all is a usage
    error (exit 2) naming the option and the variable.
    """

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def resolved(*args: Any, **kw: Any) -> Any:
            ctx = click.get_current_context()
            legacy = kw.pop("legacy_run_id", None)
            if legacy is not None:
                kw["run_id"] = _from_positional(ctx, legacy, kw.get("run_id"))
            if required and not kw.get("run_id"):
                raise click.UsageError("--run-id is required (or set METAWSM_RUN_ID)", ctx)
            return fn(*args, **kw)

        wrapped: Any = resolved
        if positional:
            wrapped = click.argument(
                "legacy_run_id", required=False, cls=_LegacyRunArgument, metavar="[RUN_ID]"
            )(wrapped)
        wrapped = click.option(
            "--run-id",
            default=lambda: env_default("RUN_ID"),
            show_default="$METAWSM_RUN_ID",
            help="The run.",
        )(wrapped)
        return cast(F, wrapped)

    return wrap


def _from_positional(ctx: click.Context, legacy: str, flag: str | None) -> str:
    explicit = ctx.get_parameter_source("run_id") == click.core.ParameterSource.COMMANDLINE
    if explicit and flag != legacy:
        raise click.UsageError(f"give the run once: --run-id {flag} or {legacy}, not both", ctx)
    click.echo(
        f"warning: the run as an argument is deprecated and goes in the next release:"
        f" use --run-id {legacy}",
        err=True,
    )
    return legacy


WAIT_FOR = ("applied", "projected")
# The option of each field of a write's command, so an invalid value is named as it was typed.
FIELD_OPTIONS = {
    "actor.name": "--actor-name",
    "actor.type": "--actor-type",
    "command_id": "--command-id",
    "payload.thread_id": "--thread-id",
    "payload.ticket": "--ticket",
    "payload.run_id": "--run-id",
    "payload.agent_name": "--agent",
    "payload.title": "--title",
    "payload.body": "--body",
    "payload.priority": "--priority",
    "payload.assignee_name": "--assignee",
    "payload.assignee_type": "--assignee-type",
    "payload.note": "--note",
    "payload.to_state": "--state",
    "payload.reason": "--reason",
}


def write_options(fn: F) -> F:
    """--json, --wait [applied|projected], --no-wait, --timeout, --command-id for every write."""
    fn = click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")(fn)
    fn = click.option(
        "--no-wait", is_flag=True, help="Return once the command is accepted (durable)."
    )(fn)
    fn = click.option(
        "--wait",
        "wait_for",
        type=click.Choice(WAIT_FOR),
        is_flag=False,
        flag_value="applied",
        default=None,
        help="Wait until the command is applied, or until the read models show it (projected)."
        "  [default: projected on a terminal, else applied; --wait alone: applied]",
    )(fn)
    fn = click.option(
        "--timeout",
        type=Duration(),
        default=None,
        show_default="$METAWSM_WAIT_TIMEOUT_S, 30s",
        help="How long to wait: 30, 30s, 5m or 1h.",
    )(fn)
    return click.option(
        "--command-id", default=None, help="Idempotency key (a fresh one by default)."
    )(fn)


def wait_mode(kw: dict[str, Any]) -> str | None:
    """What a write waits for: None (accepted), ``applied`` or ``projected`` (module rules).

    Raises:
        UsageError: --wait and --no-wait together.
    """
    if kw.get("no_wait"):
        if kw.get("wait_for"):
            raise UsageError("--wait and --no-wait cannot be combined")
        return None
    chosen = kw.get("wait_for")
    if chosen:
        return str(chosen)
    # A person at a terminal reads what they wrote next: wait until the read models show it.
    return "projected" if sys.stdout.isatty() else "applied"


def run_write(
    app: AppContext,
    command_type: str,
    payload: dict[str, Any],
    *,
    actor_type: str,
    actor_name: str,
    wait: str | None,
    timeout: float | None,
    as_json: bool,
    command_id: str | None = None,
    causation_id: str | None = None,
    quiet: bool = False,
) -> Outcome:
    """Validate, submit as the acting identity (metawsm.cli.acting: the token's, or the local
    one from the actor flags), wait (``wait``: None, ``applied`` or ``projected``), render;
    exits non-zero unless applied or accepted."""
    from metawsm.cli.acting import acting_identity, check_remote_actor
    from metawsm.services.accept import make_plain_command

    remote = app.remote  # with the API, its token's identity acts: nothing to prove here
    identity = acting_identity(app, actor_type, actor_name) if remote is None else None
    if remote is not None:  # typed actor flags must still name the token's holder
        check_remote_actor(app, actor_type, actor_name)
    if identity is not None:
        actor_type, actor_name = identity.actor_type, identity.actor_name
    try:
        command = make_plain_command(
            command_type,
            payload,
            actor_type=actor_type,
            actor_name=actor_name,
            command_id=command_id,
            causation_id=causation_id,
        )
    except Exception as exc:
        from pydantic import ValidationError  # loaded only when the input is invalid

        if isinstance(exc, ValidationError):
            raise usage_from_validation(exc, options=FIELD_OPTIONS) from None
        raise
    if remote is not None:  # the API acts as its token's identity, and waits as asked
        from metawsm.cli.remote_writes import submit_remote

        outcome = submit_remote(
            remote, command_type, payload, wait=wait, timeout=timeout, command_id=command_id
        )
        _finish(outcome, as_json, quiet)
        return outcome
    assert identity is not None  # the local path proved it above
    outcome = _submit(app, command, identity)
    if wait and not outcome.final:
        if not outcome.published:  # say at once why the wait may be long
            click.echo(f"warning: {_not_published(outcome)}", err=True)
        outcome = _wait(app, outcome, timeout)
    if wait == "projected" and outcome.status == "applied":
        limit = timeout if timeout is not None else app.settings.wait_timeout_s
        _wait_projected(app, outcome.command_id, limit)
    _finish(outcome, as_json, quiet)
    return outcome


def _finish(outcome: Outcome, as_json: bool, quiet: bool) -> None:
    """Render the outcome (a rejection even when ``quiet``); exit 1 unless applied or accepted."""
    if not quiet or outcome.status in ("rejected", "dead"):
        render_outcome(outcome, as_json)
    if outcome.status in ("rejected", "dead"):
        raise click.exceptions.Exit(EXIT_FAILED)


def _submit(app: AppContext, command: Acceptable, identity: Identity) -> Outcome:
    """Accept (the one accept, services/accept.py) as ``identity`` and publish after commit:
    through the driver when it opens the database (no SQLAlchemy imported), else through the
    in-process submit."""
    if not app.direct():
        from metawsm.messages.commands import parse_command
        from metawsm.services.accept import wire_form
        from metawsm.services.submit import submit

        model = parse_command(wire_form(command))
        return submit(app.container.runtime, model, identity=identity)
    from datetime import UTC, datetime

    from metawsm.services.accept import accept
    from metawsm.services.outbox_rows import publish_messages

    parts = app.parts
    with app.writing() as db:
        topic = parts.topics.command(command.command_type)
        accepted = accept(db, command, topic, datetime.now(UTC), identity=identity)
    if accepted.message is None:
        return accepted.outcome
    report, failed = publish_messages(parts.publisher, [accepted.message])
    if not failed:
        return accepted.outcome
    from metawsm.services.outbox import record_failed  # the rare path: SQLAlchemy is fine here

    record_failed(app.container.engine, failed, app.settings)
    return accepted.outcome.unpublished("; ".join(report.errors))


def _wait_projected(app: AppContext, command_id: str, limit: float) -> None:
    from metawsm.services.accept import is_projected
    from metawsm.services.waiting import wait_until_projected

    def projected() -> bool:
        with app.reading() as db:
            return is_projected(db, command_id)

    wait_until_projected(projected, command_id, limit)


def _wait(app: AppContext, outcome: Outcome, timeout: float | None) -> Outcome:
    from metawsm.services.accept import read_outcome
    from metawsm.services.waiting import wait_until_final

    def read() -> Outcome | None:
        with app.reading() as db:
            return read_outcome(db, outcome.command_id)

    limit = timeout if timeout is not None else app.settings.wait_timeout_s
    try:
        return wait_until_final(read, outcome.command_id, limit)
    except WaitTimeout:
        if not outcome.published:
            raise _Unpublished(
                f"command {outcome.command_id} is accepted and durable but was not published"
                f" ({outcome.publish_error}), and it had no outcome after {limit:g} s;"
                f" {_WHEN_PUBLISHED}, then applied"
            ) from None
        raise


class _Unpublished(MetawsmError):
    """The broker did not take the command and no outcome came in time (exit 3)."""

    exit_code = EXIT_UNREACHABLE


_WHEN_PUBLISHED = (
    "it will be published when the broker answers (by the outbox drainer that beat runs)"
)


def _not_published(outcome: Outcome) -> str:
    return (
        f"command {outcome.command_id} is accepted and durable but not published yet"
        f" ({outcome.publish_error}); {_WHEN_PUBLISHED}"
    )


def render_outcome(outcome: Outcome, as_json: bool) -> None:
    """Print an outcome: data on stdout, problems on stderr."""
    if as_json:
        emit_json(outcome.as_dict())
    else:
        thread = f" thread={outcome.thread_id}" if outcome.thread_id else ""
        click.echo(f"{outcome.status} {outcome.command_type} {outcome.command_id}{thread}")
    if outcome.status == "rejected":
        click.echo(f"rejected: {outcome.reason}", err=True)
    elif outcome.status == "dead":
        click.echo(f"dead-lettered: {outcome.reason}", err=True)
    elif not outcome.published:
        click.echo(f"warning: {_not_published(outcome)}", err=True)
