"""Delivering one message: count it, handle it once, record the outcome, decide what comes next.

One function per message kind, :func:`deliver_command` and :func:`deliver_event`, owns the
delivery count, the limit, the retry decision and dead-lettering, and returns a
:class:`Result`; a Celery task only parses the broker's delivery info, calls it and maps the
result to ack or retry (``workers/tasks.py``). The order of steps is the point:

1. validate the message (invalid: dead-letter at once);
2. count the delivery in the database. A message that may have been worked on before (Redis
   restores every unacked message with ``redelivered`` set, a Celery retry, a re-drive from the
   outbox) is counted in its own transaction BEFORE any work, so a worker killed mid-task cannot
   loop forever: past the limit the message is dead-lettered. A first delivery is counted by the
   handling transaction itself (one transaction instead of two); if it dies with its worker, the
   redelivery is counted first, so at most one attempt goes uncounted;
3. handle it in one unit of work that also marks the command applied and publishes what it
   wrote after commit. Commands of one thread are applied in acceptance order: a command whose
   thread has commands accepted before it and still in flight applies those first, each in its
   own unit of work (the earliest first), then itself;
4. on failure: retry with backoff, or dead-letter at the limit. Waiting for a predecessor that
   cannot be applied yet is not a failure: the delivery is retried as a first delivery, without
   spending the failure budget.

Only commands accepted through metawsm (with a ledger row) are applied: anything else that
reaches a command queue is dead-lettered (the trust boundary, docs/contracts.md). Likewise an
event message is consumed only as the event log holds it: one that is not in the log, or says
something else than the logged event, is dead-lettered, never projected nor acted on.
"""

from __future__ import annotations

import logging
import traceback
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError
from sqlalchemy import Connection, and_, bindparam, func, or_, select, update

from metawsm.errors import InvalidMessage, Rejected, Transient
from metawsm.messages.commands import AnyCommand, parse_command
from metawsm.messages.common import Actor
from metawsm.messages.events import Event, parse_event
from metawsm.ops.catalogue import COMMAND_LAG, COMMANDS_APPLIED, COMMANDS_REJECTED
from metawsm.ops.counters import count, observe, record
from metawsm.runtime import Runtime
from metawsm.services.deadletters import Failure, dead_letter
from metawsm.services.eventlog import EVENT_FIELDS, EVENTS, trusted_events
from metawsm.services.handlers import HandlerContext
from metawsm.services.messagebus import MessageBus
from metawsm.services.outbox import backoff_s, mark_done
from metawsm.services.threads import ThreadStore
from metawsm.services.unit_of_work import UnitOfWork
from metawsm.storage import tables
from metawsm.storage.engine import connect
from metawsm.storage.uow import connection_unit, lock_event_log

COMMANDS = tables.forum_commands
_LOGGED_EVENT = select(EVENTS).where(EVENTS.c.event_id == bindparam("eid"))
OUTBOX = tables.forum_outbox
_COMMAND_STATE = select(
    COMMANDS.c.status,
    COMMANDS.c.delivery_attempts,
    COMMANDS.c.thread_id,
    COMMANDS.c.accepted_at,
).where(COMMANDS.c.command_id == bindparam("cid"))
# The earliest command of the same thread accepted before this one and still in flight.
_PREDECESSOR = (
    select(COMMANDS.c.command_id, COMMANDS.c.payload)
    .where(
        COMMANDS.c.thread_id == bindparam("tid"),
        COMMANDS.c.status == "accepted",
        or_(
            COMMANDS.c.accepted_at < bindparam("at"),
            and_(
                COMMANDS.c.accepted_at == bindparam("at"),
                COMMANDS.c.command_id < bindparam("cid"),
            ),
        ),
    )
    .order_by(COMMANDS.c.accepted_at, COMMANDS.c.command_id)
    .limit(1)
)
# A retry is scheduled: restart the message's reconciliation clock (it is being worked on, so a
# re-driven copy would only be a duplicate), and keep the time of its first failure.
_RETRYING = (
    update(OUTBOX)
    .where(OUTBOX.c.message_id == bindparam("mid"), OUTBOX.c.status == "sent")
    .values(sent_at=bindparam("now"))
)
_FIRST_FAILURE = (
    update(OUTBOX)
    .where(OUTBOX.c.message_id == bindparam("mid"))
    .values(first_failed_at=func.coalesce(OUTBOX.c.first_failed_at, bindparam("now")))
)
_COMMAND_THREAD = select(COMMANDS.c.status, COMMANDS.c.thread_id, COMMANDS.c.command_type).where(
    COMMANDS.c.command_id == bindparam("cid")
)
_COUNT_COMMAND = (
    update(COMMANDS)
    .where(COMMANDS.c.command_id == bindparam("cid"), COMMANDS.c.status == "accepted")
    .values(
        delivery_attempts=COMMANDS.c.delivery_attempts + 1,
        updated_at=bindparam("now"),
    )
)
_FINISH_COMMAND = (
    update(COMMANDS)
    .where(COMMANDS.c.command_id == bindparam("cid"))
    .values(
        status=bindparam("status"),
        thread_id=bindparam("tid"),
        reason=bindparam("reason"),
        delivery_attempts=COMMANDS.c.delivery_attempts + bindparam("inc"),
        updated_at=bindparam("now"),
        finished_at=bindparam("now"),
    )
)
_UNCOUNT_COMMAND = (
    update(COMMANDS)
    .where(
        COMMANDS.c.command_id == bindparam("cid"),
        COMMANDS.c.status == "accepted",
        COMMANDS.c.delivery_attempts > 0,
    )
    .values(delivery_attempts=COMMANDS.c.delivery_attempts - 1, updated_at=bindparam("now"))
)
# A copy of a message whose effect already landed (row done) is not another delivery.
_COUNT_EVENT = (
    update(OUTBOX)
    .where(OUTBOX.c.message_id == bindparam("mid"), OUTBOX.c.status != "done")
    .values(deliveries=OUTBOX.c.deliveries + 1)
)
_EVENT_DELIVERIES = select(OUTBOX.c.status, OUTBOX.c.deliveries).where(
    OUTBOX.c.message_id == bindparam("mid")
)

log = logging.getLogger("metawsm.delivery")

# What handling answers when a first delivery finds the ledger already at the delivery limit
# (earlier copies died with their workers): it is counted on its own, then dead-lettered.
_PAST_LIMIT = "past_limit"
# How many predecessors one delivery applies before it leaves the rest for later.
MAX_PREDECESSORS = 1000


class NotAccepted(Exception):
    """A command message whose id has no ledger row: it was never accepted through metawsm."""


class WaitingForPredecessor(Transient):
    """A command of the same thread accepted earlier cannot be applied yet; this one waits."""


class _Behind(Exception):
    """Raised inside a handling transaction: ``predecessor`` must be applied first."""

    def __init__(self, predecessor: AnyCommand) -> None:
        super().__init__(predecessor.command_id)
        self.predecessor = predecessor


@dataclass(frozen=True)
class Delivery:
    """How a message arrived: the broker's message id, its topic, and whether it may have been
    worked on before (a redelivery, a retry, a re-drive)."""

    message_id: str
    topic: str
    seen_before: bool


@dataclass(frozen=True)
class Result:
    """What became of a delivery.

    ``status``: applied, rejected, duplicate, dead, or (with ``retry_in_s`` set) ``retry`` (a
    failed attempt, counted) or ``wait`` (behind a predecessor, not a failure: deliver it again
    as a first delivery): the transport must deliver it again after that many seconds;
    ``error`` is why.
    """

    status: str
    retry_in_s: float | None = None
    error: Exception | None = None

    @property
    def dead(self) -> bool:
        """True when the message was dead-lettered."""
        return self.status == "dead"


def deliver_command(rt: Runtime, bus: MessageBus, raw: Any, delivery: Delivery) -> Result:
    """Deliver one command message (module docstring)."""
    try:
        command = _validate(parse_command, raw, "command")
    except InvalidMessage as exc:
        _dead(rt, delivery.message_id, "command", delivery.topic, raw, exc, 1)
        return Result("dead")
    cid = command.command_id
    if not delivery.seen_before:
        try:
            status = apply_command(rt, bus, command, count_delivery=True)
        except NotAccepted as exc:
            return _not_accepted(rt, delivery, raw, exc)
        except WaitingForPredecessor as exc:
            return _wait(rt, cid, exc)
        except Exception as exc:
            # The handling transaction rolled back with its count: count it now.
            status, attempts = _count_command(rt, command)
            if status != "accepted":
                return Result(status)
            return _after_failure(rt, cid, "command", delivery, raw, exc, attempts)
        if status != _PAST_LIMIT:
            return Result(status)
    status, attempts = _count_command(rt, command)
    if status == "unknown":
        return _not_accepted(rt, delivery, raw, NotAccepted(_NOT_ACCEPTED))
    if status != "accepted":
        return Result(status)
    limit = rt.settings.retry_max_attempts
    if attempts > limit:
        # Delivered again after its last allowed attempt without finishing: an earlier
        # delivery died with its worker (SIGKILL, OOM). Running it again could loop forever.
        error = f"delivered {attempts} times (limit {limit}) without finishing"
        _dead(rt, cid, "command", delivery.topic, raw, error, attempts)
        return Result("dead")
    try:
        return Result(apply_command(rt, bus, command))
    except WaitingForPredecessor as exc:
        _uncount(rt, cid)
        return _wait(rt, cid, exc)
    except Exception as exc:
        return _after_failure(rt, cid, "command", delivery, raw, exc, attempts)


def refuse_call(rt: Runtime, kind: str, delivery: Delivery, call: Any, reason: str) -> Result:
    """Dead-letter a task call that is not a message at all (wrong arguments); ``call`` is what
    the task received, kept for the record."""
    _dead(rt, delivery.message_id, kind, delivery.topic, call, reason, 1)
    return Result("dead", error=InvalidMessage(reason))


def _not_accepted(rt: Runtime, delivery: Delivery, raw: Any, exc: Exception) -> Result:
    _dead(rt, delivery.message_id, "command", delivery.topic, raw, exc, 1)
    return Result("dead", error=exc)


def deliver_event(
    rt: Runtime, bus: MessageBus, subscriber_name: str, raw: Any, delivery: Delivery
) -> Result:
    """Deliver one event message to one subscriber (module docstring)."""
    kind = f"event.{subscriber_name}"
    try:
        event = _validate(parse_event, raw, "event")
    except InvalidMessage as exc:
        _dead(rt, delivery.message_id, kind, delivery.topic, raw, exc, 1)
        return Result("dead")
    subscriber = bus.subscriber(subscriber_name)
    message_id = f"{event.event_id}:{subscriber_name}"
    foreign = _not_as_logged(rt, event)
    if foreign is not None:
        # Its own dead-letter id: the genuine event's message may still come, and must not be
        # taken for this one.
        _dead(rt, f"{message_id}:not-logged", kind, delivery.topic, raw, foreign, 1)
        return Result("dead")
    # A first delivery to a subscriber whose transaction counts it is counted there.
    counted = delivery.seen_before or not subscriber.counts_delivery
    attempts = 0
    if counted:
        seen = _count_event(rt, message_id)
        if seen is None:
            return Result("duplicate")
        attempts = seen
        limit = rt.settings.retry_max_attempts
        if attempts > limit:
            error = f"delivered {attempts} times (limit {limit}) without finishing"
            _dead(rt, message_id, kind, delivery.topic, raw, error, attempts)
            return Result("dead")
    try:
        applied = subscriber.consume(rt, event, message_id, count_delivery=not counted)
    except Exception as exc:
        if not counted:
            attempts = _count_event(rt, message_id) or 1
        return _after_failure(rt, message_id, kind, delivery, raw, exc, attempts)
    return Result("applied" if applied else "duplicate")


def _not_as_logged(rt: Runtime, event: Event) -> str | None:
    """Why ``event`` is not the event log's (None when it is, field for field): only what a
    handler appended to the log is projected or acted on (the trust boundary)."""
    # A read-only connection: on SQLite a plain one begins by taking the write lock
    # (storage/engine.py), which queued every delivery behind the writers for one read.
    with connect(rt.engine) as conn:
        row = conn.execute(_LOGGED_EVENT, {"eid": event.event_id}).first()
    if row is None:
        return f"not in the event log: no logged event {event.event_id}"
    logged = trusted_events([row])[0]
    differing = [
        name for name in (*EVENT_FIELDS, "actor") if getattr(logged, name) != getattr(event, name)
    ]
    if differing:
        return f"differs from the logged event {event.event_id} in {', '.join(differing)}"
    return None


def _validate(parse: Any, raw: Any, what: str) -> Any:
    try:
        return parse(raw)
    except ValidationError as exc:
        raise InvalidMessage(f"invalid {what}: {_errors(exc)}") from exc


def _errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        parts.append(f"{loc}: {err['msg']}")
    return "; ".join(parts)


def _after_failure(
    rt: Runtime,
    message_id: str,
    kind: str,
    delivery: Delivery,
    raw: Any,
    exc: Exception,
    attempts: int,
) -> Result:
    """After a failed attempt: dead-letter at the limit, else retry with backoff."""
    _record_failure(rt, message_id)
    if attempts >= rt.settings.retry_max_attempts:
        _dead(rt, message_id, kind, delivery.topic, raw, exc, attempts)
        return Result("dead", error=exc)
    return Result("retry", retry_in_s=backoff_s(attempts, rt.settings), error=exc)


def _wait(rt: Runtime, message_id: str, exc: Exception) -> Result:
    """Behind a predecessor: deliver again soon, as a first delivery (no failure counted)."""
    now = rt.clock()
    with connection_unit(rt.engine) as conn:
        conn.execute(_RETRYING, {"mid": message_id, "now": now})
    return Result("wait", retry_in_s=backoff_s(1, rt.settings), error=exc)


def _record_failure(rt: Runtime, message_id: str) -> None:
    now = rt.clock()
    with connection_unit(rt.engine) as conn:
        conn.execute(_FIRST_FAILURE, {"mid": message_id, "now": now})
        conn.execute(_RETRYING, {"mid": message_id, "now": now})


def _uncount(rt: Runtime, command_id: str) -> None:
    """Take back a delivery counted before work that turned out to be a wait, not a failure."""
    with connection_unit(rt.engine) as conn:
        conn.execute(_UNCOUNT_COMMAND, {"cid": command_id, "now": rt.clock()})


def apply_command(
    rt: Runtime, bus: MessageBus, command: AnyCommand, *, count_delivery: bool = False
) -> str:
    """Handle an accepted command once, in this process; returns its final status (applied,
    rejected, or as it was). The broker path and the in-process direct path both come here.

    Commands of its thread accepted before it and still in flight are applied first, the
    earliest first, each in its own unit of work (as its own delivery would; when that delivery
    comes, it finds the command applied). With ``count_delivery`` the handling transaction also
    counts this delivery; it answers :data:`_PAST_LIMIT`, changing nothing, when the ledger shows
    the limit already reached.

    Raises:
        WaitingForPredecessor: a predecessor could not be applied now (it failed, or too many).
    """
    target = command
    for _ in range(MAX_PREDECESSORS):
        counting = count_delivery and target is command
        try:
            status = _apply_once(rt, bus, target, count_delivery=counting)
        except _Behind as behind:
            target = behind.predecessor
            continue
        except Exception as exc:
            if target is command:
                raise
            raise WaitingForPredecessor(
                f"command {target.command_id} of the same thread, accepted earlier, cannot be"
                f" applied yet: {exc}"
            ) from exc
        if target is command:
            return status
        target = command
    raise WaitingForPredecessor(
        f"more than {MAX_PREDECESSORS} commands of the same thread are ahead of"
        f" {command.command_id}"
    )


def _apply_once(rt: Runtime, bus: MessageBus, command: AnyCommand, *, count_delivery: bool) -> str:
    """One handling transaction for ``command`` (see :func:`apply_command`).

    Raises:
        _Behind: an earlier command of its thread is still in flight (nothing was written).
    """
    try:
        with UnitOfWork(rt) as uow:
            # Serialise handlers on PostgreSQL before reading any state, so invariants are
            # checked against the latest commit and event sequences follow commit order.
            lock_event_log(uow.conn)
            conn = uow.conn
            ledger = conn.execute(_COMMAND_STATE, {"cid": command.command_id}).first()
            if ledger is None:
                raise NotAccepted(_NOT_ACCEPTED)
            if ledger.status != "accepted":
                mark_done(conn, [command.command_id], uow.now)
                return str(ledger.status)
            if count_delivery and ledger.delivery_attempts >= rt.settings.retry_max_attempts:
                return _PAST_LIMIT
            _check_order(conn, command, ledger)
            writer = uow.events(
                Actor(type=command.actor_type, name=command.actor_name),
                command_id=command.command_id,
                correlation_id=command.correlation_id,
                causation_id=command.causation_id,
            )
            ctx = HandlerContext(uow.session, writer, uow.now, ThreadStore(conn))
            thread_id = bus.handler_for(command)(ctx, command)
            ctx.threads.save()
            _finish(conn, command.command_id, "applied", thread_id, None, count_delivery, uow.now)
            mark_done(conn, [command.command_id], uow.now)
            lag_s = (uow.now - ledger.accepted_at).total_seconds()
            uow.count(
                count(COMMANDS_APPLIED, command_type=command.command_type),
                *observe(COMMAND_LAG, lag_s),
                *ctx.increments,
            )
        return "applied"
    except Rejected as exc:
        return _reject(rt, command.command_id, str(exc), count_delivery=count_delivery)


_NOT_ACCEPTED = (
    "not accepted through metawsm: no ledger row for this command id (only commands submitted"
    " through metawsm are applied; see the trust boundary in docs/contracts.md)"
)


def _check_order(conn: Connection, command: AnyCommand, ledger: Any) -> None:
    """Raise :class:`_Behind` when an earlier command of the same thread is still in flight."""
    if ledger.thread_id is None:
        return
    params = {"tid": ledger.thread_id, "at": ledger.accepted_at, "cid": command.command_id}
    earlier = conn.execute(_PREDECESSOR, params).first()
    if earlier is not None:
        raise _Behind(parse_command(earlier.payload))


def _ledger_state(conn: Connection, command: AnyCommand) -> tuple[str, int]:
    row = conn.execute(_COMMAND_STATE, {"cid": command.command_id}).first()
    if row is None:
        return "unknown", 0
    return str(row.status), int(row.delivery_attempts)


def _finish(
    conn: Connection,
    command_id: str,
    status: str,
    thread_id: str | None,
    reason: str | None,
    count_delivery: bool,
    now: Any,
) -> None:
    params = {
        "cid": command_id,
        "status": status,
        "tid": thread_id,
        "reason": reason,
        "inc": 1 if count_delivery else 0,
        "now": now,
    }
    conn.execute(_FINISH_COMMAND, params)


def _reject(rt: Runtime, command_id: str, reason: str, *, count_delivery: bool) -> str:
    """Mark the command rejected with ``reason`` (final; never retried)."""
    now = rt.clock()
    with connection_unit(rt.engine) as conn:
        row = conn.execute(_COMMAND_THREAD, {"cid": command_id}).first()
        status = str(row.status) if row is not None else "rejected"
        if row is not None and status == "accepted":
            reason = reason[:2000]
            _finish(conn, command_id, "rejected", row.thread_id, reason, count_delivery, now)
            status = "rejected"
            mark_done(conn, [command_id], now)
            record(conn, [count(COMMANDS_REJECTED, command_type=row.command_type)])
        else:
            mark_done(conn, [command_id], now)
        return status


def _count_command(rt: Runtime, command: AnyCommand) -> tuple[str, int]:
    """Count one delivery of ``command`` on its own; returns (ledger status, attempts so far)."""
    now = rt.clock()
    with connection_unit(rt.engine) as conn:
        status, attempts = _ledger_state(conn, command)
        if status == "accepted":
            conn.execute(_COUNT_COMMAND, {"cid": command.command_id, "now": now})
            attempts += 1
        elif status in ("applied", "rejected"):
            # A duplicate of a finished command (e.g. redriven twice): its effect is there, so its
            # outbox row is done; left 'sent', reconciliation would re-publish it forever.
            mark_done(conn, [command.command_id], now)
        return status, attempts


def _count_event(rt: Runtime, message_id: str) -> int | None:
    """Count one delivery of an event message to its subscriber; returns deliveries so far, or
    None when its effect already landed (the row is done: a duplicate copy, not counted)."""
    with connection_unit(rt.engine) as conn:
        conn.execute(_COUNT_EVENT, {"mid": message_id})
        row = conn.execute(_EVENT_DELIVERIES, {"mid": message_id}).first()
        if row is None:
            return 1
        return None if row.status == "done" else int(row.deliveries)


def _dead(
    rt: Runtime,
    message_id: str,
    kind: str,
    topic: str,
    raw: Any,
    error: BaseException | str,
    attempts: int,
) -> None:
    """Dead-letter a message with the error (and the current traceback, if any)."""
    log.error("dead-lettering %s on %s after %d attempt(s): %s", message_id, topic, attempts, error)
    run_id = None
    if isinstance(raw, dict):
        inner = raw.get("payload")
        run_id = raw.get("run_id") or (inner.get("run_id") if isinstance(inner, dict) else None)
    tb = traceback.format_exc() if isinstance(error, BaseException) else None
    dead_letter(
        rt.engine,
        Failure(
            message_id=message_id,
            kind=kind,
            task_name=topic,
            topic=topic,
            payload=raw if isinstance(raw, dict) else {"raw": repr(raw)[:10_000]},
            error=str(error),
            traceback=tb if tb and tb.strip() != "NoneType: None" else None,
            attempts=attempts,
            run_id=str(run_id) if run_id else None,
        ),
    )
