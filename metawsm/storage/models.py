"""SQLAlchemy 2 ORM classes, mapped onto the Core tables of :mod:`metawsm.storage.tables`.

For the code that works with a ``Session`` (handlers, lifecycle, the ORM reads). The tables'
columns, types, indexes and comments are declared once, in ``tables``; the annotations here
only type the mapped attributes (tests/unit/test_tables.py keeps them in step). Importing this
module costs the ORM and the mapping: the paths that must start fast use ``tables`` alone.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Table
from sqlalchemy.orm import DeclarativeBase, Mapped

from metawsm.storage import tables


class Base(DeclarativeBase):
    """Declarative base over :data:`metawsm.storage.tables.metadata`."""

    metadata = tables.metadata


class ForumThread(Base):
    """Authoritative thread state (command side)."""

    __table__ = tables.forum_threads
    thread_id: Mapped[str]
    ticket: Mapped[str]
    run_id: Mapped[str | None]
    agent_name: Mapped[str | None]
    title: Mapped[str]
    state: Mapped[str]
    priority: Mapped[str]
    assignee_type: Mapped[str | None]
    assignee_name: Mapped[str | None]
    opened_by_type: Mapped[str]
    opened_by_name: Mapped[str]
    is_control: Mapped[bool]
    last_thread_seq: Mapped[int]
    opened_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]


class ForumPost(Base):
    """A post on a thread (the opening post, replies, answers and control signals)."""

    __table__ = tables.forum_posts
    post_id: Mapped[str]
    thread_id: Mapped[str]
    event_id: Mapped[str]
    author_type: Mapped[str]
    author_name: Mapped[str]
    body: Mapped[str]
    kind: Mapped[str]
    created_at: Mapped[datetime]


class ForumAssignment(Base):
    """Assignment history: one row per assign command applied."""

    __table__ = tables.forum_assignments
    id: Mapped[int]
    thread_id: Mapped[str]
    event_id: Mapped[str]
    from_assignee_type: Mapped[str | None]
    from_assignee_name: Mapped[str | None]
    to_assignee_type: Mapped[str]
    to_assignee_name: Mapped[str]
    note: Mapped[str | None]
    changed_by_type: Mapped[str]
    changed_by_name: Mapped[str]
    changed_at: Mapped[datetime]


class ForumStateTransition(Base):
    """State history: one row per state change (including close)."""

    __table__ = tables.forum_state_transitions
    id: Mapped[int]
    thread_id: Mapped[str]
    event_id: Mapped[str]
    from_state: Mapped[str]
    to_state: Mapped[str]
    changed_by_type: Mapped[str]
    changed_by_name: Mapped[str]
    changed_at: Mapped[datetime]


class ForumEvent(Base):
    """The append-only event log. ``sequence`` is global and assigned in commit order."""

    __table__ = tables.forum_events
    sequence: Mapped[int]
    event_id: Mapped[str]
    event_type: Mapped[str]
    event_version: Mapped[int]
    occurred_at: Mapped[datetime]
    recorded_at: Mapped[datetime]
    thread_id: Mapped[str | None]
    thread_seq: Mapped[int | None]
    run_id: Mapped[str | None]
    ticket: Mapped[str | None]
    agent_name: Mapped[str | None]
    actor_type: Mapped[str]
    actor_name: Mapped[str]
    correlation_id: Mapped[str | None]
    causation_id: Mapped[str | None]
    command_id: Mapped[str | None]
    payload: Mapped[dict[str, Any]]


class ForumCommand(Base):
    """The ledger of accepted commands and their outcome."""

    __table__ = tables.forum_commands
    command_id: Mapped[str]
    command_type: Mapped[str]
    payload: Mapped[dict[str, Any]]
    status: Mapped[str]
    reason: Mapped[str | None]
    thread_id: Mapped[str | None]
    delivery_attempts: Mapped[int]
    accepted_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    token_id: Mapped[str | None]


class ForumOutbox(Base):
    """Messages waiting to be, or already, published to the broker."""

    __table__ = tables.forum_outbox
    id: Mapped[int]
    message_id: Mapped[str]
    kind: Mapped[str]
    topic: Mapped[str]
    message_key: Mapped[str | None]
    payload: Mapped[dict[str, Any]]
    status: Mapped[str]
    attempts: Mapped[int]
    publish_count: Mapped[int]
    deliveries: Mapped[int]
    next_attempt_at: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    lease_owner: Mapped[str | None]
    last_error: Mapped[str | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    first_failed_at: Mapped[datetime | None]


class ForumThreadView(Base):
    """Read model: one row per thread for lists, detail, queues (unseen/unanswered)."""

    __table__ = tables.forum_thread_views
    thread_id: Mapped[str]
    ticket: Mapped[str]
    run_id: Mapped[str | None]
    agent_name: Mapped[str | None]
    title: Mapped[str]
    state: Mapped[str]
    priority: Mapped[str]
    assignee_type: Mapped[str | None]
    assignee_name: Mapped[str | None]
    opened_by_type: Mapped[str]
    opened_by_name: Mapped[str]
    is_control: Mapped[bool]
    posts_count: Mapped[int]
    last_post_at: Mapped[datetime | None]
    last_post_by_type: Mapped[str | None]
    last_post_by_name: Mapped[str | None]
    opened_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    last_event_sequence: Mapped[int]
    last_thread_seq: Mapped[int]
    last_actor_type: Mapped[str | None]
    last_non_system_actor_type: Mapped[str | None]
    last_human_or_operator_sequence: Mapped[int]
    last_agent_sequence: Mapped[int]
    urgency: Mapped[int]
    is_unanswered: Mapped[bool]


class ForumThreadStat(Base):
    """Read model: thread counts per (ticket, run_id, state, priority); run_id '' = no run."""

    __table__ = tables.forum_thread_stats
    ticket: Mapped[str]
    run_id: Mapped[str]
    state: Mapped[str]
    priority: Mapped[str]
    thread_count: Mapped[int]


class ForumThreadRead(Base):
    """Per-viewer 'last seen' watermark; only moves forward."""

    __table__ = tables.forum_thread_reads
    thread_id: Mapped[str]
    viewer_type: Mapped[str]
    viewer_id: Mapped[str]
    last_seen_event_sequence: Mapped[int]
    updated_at: Mapped[datetime]


class ForumProjectionEvent(Base):
    """Projection ledger: (projection, event_id) applied; makes projectors idempotent."""

    __table__ = tables.forum_projection_events
    projection: Mapped[str]
    event_id: Mapped[str]
    applied_at: Mapped[datetime]


class ForumControlThread(Base):
    """Exactly one control thread per (run_id, agent_name), enforced by the primary key."""

    __table__ = tables.forum_control_threads
    run_id: Mapped[str]
    agent_name: Mapped[str]
    thread_id: Mapped[str]
    ticket: Mapped[str]
    created_at: Mapped[datetime]


class ForumDeadLetter(Base):
    """A message that could not be processed, kept for a human to inspect and redrive."""

    __table__ = tables.forum_dead_letters
    id: Mapped[int]
    message_id: Mapped[str]
    kind: Mapped[str]
    task_name: Mapped[str]
    topic: Mapped[str]
    payload: Mapped[dict[str, Any]]
    error: Mapped[str]
    traceback: Mapped[str | None]
    attempts: Mapped[int]
    status: Mapped[str]
    run_id: Mapped[str | None]
    first_failed_at: Mapped[datetime]
    last_failed_at: Mapped[datetime]
    redriven_at: Mapped[datetime | None]


class ForumEscalation(Base):
    """An SLA escalation raised once per (thread, tier, subject)."""

    __table__ = tables.forum_escalations
    id: Mapped[int]
    thread_id: Mapped[str]
    tier: Mapped[str]
    subject: Mapped[str]
    run_id: Mapped[str | None]
    event_id: Mapped[str]
    reason: Mapped[str]
    raised_at: Mapped[datetime]


class Run(Base):
    """A run of agents on tickets; its status moves only through the lifecycle rules."""

    __table__ = tables.runs
    run_id: Mapped[str]
    status: Mapped[str]
    mode: Mapped[str]
    tickets: Mapped[list[str]]
    control_epoch: Mapped[int]
    reason: Mapped[str | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    facts_version: Mapped[int]


class RunAgent(Base):
    """An agent taking part in a run."""

    __table__ = tables.run_agents
    run_id: Mapped[str]
    agent_name: Mapped[str]
    status: Mapped[str]
    last_signal_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class RunBrief(Base):
    """The bootstrap brief of a run; its done_criteria gate the close."""

    __table__ = tables.run_briefs
    run_id: Mapped[str]
    ticket: Mapped[str]
    goal: Mapped[str]
    scope: Mapped[str]
    done_criteria: Mapped[str]
    constraints: Mapped[str]
    merge_intent: Mapped[str]
    qa: Mapped[list[dict[str, str]]]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class RunSnapshotDoc(Base):
    """A run's snapshot parts that do not depend on the clock, as read at ``facts_version``.

    A cache (services/snapshot_docs.py): a snapshot uses it while ``runs.facts_version`` is
    still that version (triggers on the seven tables it is made from count every change:
    migration 0010), and remakes and stores it otherwise. Dropping every row loses nothing.
    """

    __table__ = tables.run_snapshot_docs
    run_id: Mapped[str]
    facts_version: Mapped[int]
    doc: Mapped[bytes]


class RunEvent(Base):
    """Run-level audit: every status transition with its cause."""

    __table__ = tables.run_events
    id: Mapped[int]
    run_id: Mapped[str]
    event_type: Mapped[str]
    from_status: Mapped[str | None]
    to_status: Mapped[str | None]
    reason: Mapped[str]
    cause_event_id: Mapped[str | None]
    created_at: Mapped[datetime]


class RunAgentControl(Base):
    """Read model: each agent's control state, advanced by every control signal.

    Written by the ``control_signal`` handler in the transaction that logs the signal
    (metawsm.domain.control.advance), refilled from the log by ``projections rebuild``. Epoch
    independent: completion and validation keep their epoch (see ``ControlState``).
    """

    __table__ = tables.run_agent_controls
    run_id: Mapped[str]
    agent_name: Mapped[str]
    thread_id: Mapped[str | None]
    pending: Mapped[bool]
    question: Mapped[str | None]
    context: Mapped[str | None]
    asked_at: Mapped[datetime | None]
    request_event_id: Mapped[str | None]
    request_seq: Mapped[int]
    completion_epoch: Mapped[int | None]
    summary: Mapped[str | None]
    validation_epoch: Mapped[int | None]
    validation_status: Mapped[str | None]
    validation_done_criteria: Mapped[str | None]
    last_signal_at: Mapped[datetime | None]
    last_event_id: Mapped[str | None]
    last_thread_seq: Mapped[int]


class OpsCounter(Base):
    """One shard of a counter or histogram series, bumped in the transaction of the work it counts.

    ``name`` is the series (a counter, or ``<histogram>:bucket`` / ``<histogram>:sum``),
    ``labels`` its canonical label text (``command_type="open_thread"``, ``le="0.25"``, or '').
    Writers on PostgreSQL spread over a few ``shard`` rows (by process) so concurrent
    transactions rarely wait on one row; the exporter sums the shards (metawsm.ops.counters).
    """

    __table__ = tables.ops_counters
    name: Mapped[str]
    labels: Mapped[str]
    shard: Mapped[int]
    value: Mapped[float]


class OpsHeartbeat(Base):
    """The last sign of life of one process in one role (a worker's role, or ``beat``).

    Liveness comes from the age of ``beat_at``, so a SIGKILLed process ages out by itself.
    """

    __table__ = tables.ops_heartbeats
    process: Mapped[str]
    role: Mapped[str]
    started_at: Mapped[datetime]
    beat_at: Mapped[datetime]


class OpsGuidancePending(Base):
    """The guidance request still unanswered on a control thread (one per agent of a run).

    Written by the control-signal handler in its transaction: a request replaces the row, an
    answer deletes it (and is timed against it). The exporter counts these rows instead of
    folding every active run's signals at each scrape.
    """

    __table__ = tables.ops_guidance_pending
    thread_id: Mapped[str]
    run_id: Mapped[str]
    agent_name: Mapped[str]
    request_event_id: Mapped[str]
    asked_at: Mapped[datetime]


class AuthToken(Base):
    """A bearer token and the identity it proves (metawsm.services.tokens, migration 0007).

    Only ``token_hash`` (SHA-256 hex of the token) is stored: the token is printed once. A token
    is valid until ``expires_at`` (None: no expiry) unless ``revoked_at`` is set. ``created_by``
    and ``revoked_by`` are ``type/name`` of the identity that did it.
    """

    __table__ = tables.auth_tokens
    token_id: Mapped[str]
    token_hash: Mapped[str]
    actor_type: Mapped[str]
    actor_name: Mapped[str]
    run_id: Mapped[str | None]
    created_by: Mapped[str]
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None]


class RunCreation(Base):
    """A run created with an idempotency key (``POST /runs`` with ``Idempotency-Key``)."""

    __table__ = tables.run_creations
    idempotency_key: Mapped[str]
    run_id: Mapped[str]
    request: Mapped[dict[str, Any]]
    created_by: Mapped[str]
    created_at: Mapped[datetime]


def table(model: type[Base]) -> Table:
    """The Core table of a mapped class, typed (``__table__`` is only a FromClause to mypy)."""
    mapped = model.__table__
    assert isinstance(mapped, Table)
    return mapped
