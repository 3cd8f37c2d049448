"""SQLAlchemy 2 typed models of every table. Alembic owns the schema; these describe it.

Command side: threads, posts, assignments, state transitions, the event log, the command ledger,
the outbox, control threads, dead letters, escalations and runs. Read side: thread views, stats,
reads (seen watermarks) and the projection ledger.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from metawsm.storage.types import UTCDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

ID = String(128)
NAME = String(512)
SHORT = String(32)


class Base(DeclarativeBase):
    """Declarative base with a stable constraint naming convention (for migrations)."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: JSON()}


class ForumThread(Base):
    """Authoritative thread state (command side)."""

    __tablename__ = "forum_threads"
    thread_id: Mapped[str] = mapped_column(ID, primary_key=True)
    ticket: Mapped[str] = mapped_column(NAME)
    run_id: Mapped[str | None] = mapped_column(NAME)
    agent_name: Mapped[str | None] = mapped_column(NAME)
    title: Mapped[str] = mapped_column(NAME)
    state: Mapped[str] = mapped_column(SHORT)
    priority: Mapped[str] = mapped_column(SHORT)
    assignee_type: Mapped[str | None] = mapped_column(SHORT)
    assignee_name: Mapped[str | None] = mapped_column(NAME)
    opened_by_type: Mapped[str] = mapped_column(SHORT)
    opened_by_name: Mapped[str] = mapped_column(NAME)
    is_control: Mapped[bool] = mapped_column(Boolean, default=False)
    last_thread_seq: Mapped[int] = mapped_column(Integer, default=0)
    opened_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    __table_args__ = (
        Index("ix_forum_threads_ticket_state_priority", "ticket", "state", "priority"),
    )


class ForumPost(Base):
    """A post on a thread (the opening post, replies, answers and control signals)."""

    __tablename__ = "forum_posts"
    post_id: Mapped[str] = mapped_column(ID, primary_key=True)
    thread_id: Mapped[str] = mapped_column(ID)
    event_id: Mapped[str] = mapped_column(ID, unique=True)
    author_type: Mapped[str] = mapped_column(SHORT)
    author_name: Mapped[str] = mapped_column(NAME)
    body: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(SHORT)
    created_at: Mapped[datetime]
    __table_args__ = (Index("ix_forum_posts_thread_created", "thread_id", "created_at"),)


class ForumAssignment(Base):
    """Assignment history: one row per assign command applied."""

    __tablename__ = "forum_assignments"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    thread_id: Mapped[str] = mapped_column(ID, index=True)
    event_id: Mapped[str] = mapped_column(ID, unique=True)
    from_assignee_type: Mapped[str | None] = mapped_column(SHORT)
    from_assignee_name: Mapped[str | None] = mapped_column(NAME)
    to_assignee_type: Mapped[str] = mapped_column(SHORT)
    to_assignee_name: Mapped[str] = mapped_column(NAME)
    note: Mapped[str | None] = mapped_column(Text)
    changed_by_type: Mapped[str] = mapped_column(SHORT)
    changed_by_name: Mapped[str] = mapped_column(NAME)
    changed_at: Mapped[datetime]


class ForumStateTransition(Base):
    """State history: one row per state change (including close)."""

    __tablename__ = "forum_state_transitions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    thread_id: Mapped[str] = mapped_column(ID, index=True)
    event_id: Mapped[str] = mapped_column(ID, unique=True)
    from_state: Mapped[str] = mapped_column(SHORT)
    to_state: Mapped[str] = mapped_column(SHORT)
    changed_by_type: Mapped[str] = mapped_column(SHORT)
    changed_by_name: Mapped[str] = mapped_column(NAME)
    changed_at: Mapped[datetime]


class ForumEvent(Base):
    """The append-only event log. ``sequence`` is global and assigned in commit order."""

    __tablename__ = "forum_events"
    sequence: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    event_id: Mapped[str] = mapped_column(ID, unique=True)
    event_type: Mapped[str] = mapped_column(String(64))
    event_version: Mapped[int] = mapped_column(Integer)
    occurred_at: Mapped[datetime]
    recorded_at: Mapped[datetime]
    thread_id: Mapped[str | None] = mapped_column(ID)
    thread_seq: Mapped[int | None] = mapped_column(Integer)
    run_id: Mapped[str | None] = mapped_column(NAME)
    ticket: Mapped[str | None] = mapped_column(NAME)
    agent_name: Mapped[str | None] = mapped_column(NAME)
    actor_type: Mapped[str] = mapped_column(SHORT)
    actor_name: Mapped[str] = mapped_column(NAME)
    correlation_id: Mapped[str | None] = mapped_column(ID)
    causation_id: Mapped[str | None] = mapped_column(ID)
    command_id: Mapped[str | None] = mapped_column(ID, index=True)
    payload: Mapped[dict[str, Any]]
    __table_args__ = (
        UniqueConstraint("thread_id", "thread_seq", name="uq_forum_events_thread_seq"),
        Index("ix_forum_events_ticket_sequence", "ticket", "sequence"),
        # A run's events in order, with the type and time of each: the snapshot's last event of
        # every run from the index alone (migration 0009).
        Index("ix_forum_events_run_sequence", "run_id", "sequence", "event_type", "occurred_at"),
        Index("ix_forum_events_run_type_sequence", "run_id", "event_type", "sequence"),
    )


class ForumCommand(Base):
    """The ledger of accepted commands and their outcome."""

    __tablename__ = "forum_commands"
    command_id: Mapped[str] = mapped_column(ID, primary_key=True)
    command_type: Mapped[str] = mapped_column(String(32))
    payload: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(SHORT)  # accepted | applied | rejected | dead
    reason: Mapped[str | None] = mapped_column(Text)
    thread_id: Mapped[str | None] = mapped_column(ID)
    delivery_attempts: Mapped[int] = mapped_column(Integer, default=0)
    accepted_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    finished_at: Mapped[datetime | None]
    # The bearer token the command was accepted with (None: a local identity; migration 0007).
    token_id: Mapped[str | None] = mapped_column(ID)
    __table_args__ = (
        Index("ix_forum_commands_status_updated", "status", "updated_at"),
        # Per-thread ordering: the commands of a thread accepted before this one, still open.
        Index("ix_forum_commands_thread_status_accepted", "thread_id", "status", "accepted_at"),
    )


class ForumOutbox(Base):
    """Messages waiting to be, or already, published to the broker."""

    __tablename__ = "forum_outbox"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(ID, unique=True)
    kind: Mapped[str] = mapped_column(SHORT)  # command | event
    topic: Mapped[str] = mapped_column(String(128))
    message_key: Mapped[str | None] = mapped_column(ID)
    payload: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(SHORT)  # pending | processing | sent
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    publish_count: Mapped[int] = mapped_column(Integer, default=0)
    # Deliveries its consumer started (counted before the work, so a worker killed mid-task
    # cannot loop forever on one message).
    deliveries: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    lease_owner: Mapped[str | None] = mapped_column(String(64))
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    # When its consumer's first attempt failed (kept across retries, for the dead letter).
    first_failed_at: Mapped[datetime | None]
    __table_args__ = (
        Index("ix_forum_outbox_status_next", "status", "next_attempt_at"),
        Index("ix_forum_outbox_status_sent", "status", "sent_at"),
    )


# The columns the snapshot reads of a run's threads, in the order of its covering index.
RUN_OPEN_VIEW_COLUMNS = (
    "run_id",
    "last_event_sequence",
    "is_control",
    "state",
    "thread_id",
    "title",
    "priority",
    "assignee_name",
    "updated_at",
    "is_unanswered",
    "agent_name",
)


class ForumThreadView(Base):
    """Read model: one row per thread for lists, detail, queues (unseen/unanswered)."""

    __tablename__ = "forum_thread_views"
    thread_id: Mapped[str] = mapped_column(ID, primary_key=True)
    ticket: Mapped[str] = mapped_column(NAME)
    run_id: Mapped[str | None] = mapped_column(NAME)
    agent_name: Mapped[str | None] = mapped_column(NAME)
    title: Mapped[str] = mapped_column(NAME)
    state: Mapped[str] = mapped_column(SHORT)
    priority: Mapped[str] = mapped_column(SHORT)
    assignee_type: Mapped[str | None] = mapped_column(SHORT)
    assignee_name: Mapped[str | None] = mapped_column(NAME)
    opened_by_type: Mapped[str] = mapped_column(SHORT)
    opened_by_name: Mapped[str] = mapped_column(NAME)
    is_control: Mapped[bool] = mapped_column(Boolean, default=False)
    posts_count: Mapped[int] = mapped_column(Integer)
    last_post_at: Mapped[datetime | None]
    last_post_by_type: Mapped[str | None] = mapped_column(SHORT)
    last_post_by_name: Mapped[str | None] = mapped_column(NAME)
    opened_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    closed_at: Mapped[datetime | None]
    last_event_sequence: Mapped[int] = mapped_column(BigInteger)
    last_thread_seq: Mapped[int] = mapped_column(Integer)
    last_actor_type: Mapped[str | None] = mapped_column(SHORT)
    last_non_system_actor_type: Mapped[str | None] = mapped_column(SHORT)
    last_human_or_operator_sequence: Mapped[int] = mapped_column(BigInteger, default=0)
    last_agent_sequence: Mapped[int] = mapped_column(BigInteger, default=0)
    # Derived by the fold (metawsm.domain.views): 4 urgent .. 1 low, and the unanswered rule.
    urgency: Mapped[int] = mapped_column(Integer, default=0)
    is_unanswered: Mapped[bool] = mapped_column(Boolean, default=False)
    __table_args__ = (
        Index("ix_forum_thread_views_filters", "ticket", "state", "priority", "updated_at"),
        Index("ix_forum_thread_views_run", "run_id", "last_event_sequence"),
        # The snapshot's open threads of runs, from the index alone (migration 0008).
        Index(
            "ix_forum_thread_views_run_open",
            *RUN_OPEN_VIEW_COLUMNS,
            sqlite_where=text("run_id IS NOT NULL"),
            postgresql_where=text("run_id IS NOT NULL"),
        ),
        Index("ix_forum_thread_views_run_control_state", "run_id", "is_control", "state"),
        Index("ix_forum_thread_views_escalating", "state", "is_control", "updated_at"),
        # Lists and queues: ORDER BY urgency DESC, last_event_sequence DESC, read backwards.
        Index("ix_forum_thread_views_list", "urgency", "last_event_sequence"),
        Index("ix_forum_thread_views_ticket_list", "ticket", "urgency", "last_event_sequence"),
        Index(
            "ix_forum_thread_views_unanswered",
            "is_unanswered",
            "urgency",
            "last_event_sequence",
        ),
    )


class ForumThreadStat(Base):
    """Read model: thread counts per (ticket, run_id, state, priority); run_id '' = no run."""

    __tablename__ = "forum_thread_stats"
    ticket: Mapped[str] = mapped_column(NAME, primary_key=True)
    run_id: Mapped[str] = mapped_column(NAME, primary_key=True)
    state: Mapped[str] = mapped_column(SHORT, primary_key=True)
    priority: Mapped[str] = mapped_column(SHORT, primary_key=True)
    thread_count: Mapped[int] = mapped_column(Integer)


class ForumThreadRead(Base):
    """Per-viewer 'last seen' watermark; only moves forward."""

    __tablename__ = "forum_thread_reads"
    thread_id: Mapped[str] = mapped_column(ID, primary_key=True)
    viewer_type: Mapped[str] = mapped_column(SHORT, primary_key=True)
    viewer_id: Mapped[str] = mapped_column(NAME, primary_key=True)
    last_seen_event_sequence: Mapped[int] = mapped_column(BigInteger, default=0)
    updated_at: Mapped[datetime]


class ForumProjectionEvent(Base):
    """Projection ledger: (projection, event_id) applied; makes projectors idempotent."""

    __tablename__ = "forum_projection_events"
    projection: Mapped[str] = mapped_column(String(64), primary_key=True)
    event_id: Mapped[str] = mapped_column(ID, primary_key=True)
    applied_at: Mapped[datetime]


class ForumControlThread(Base):
    """Exactly one control thread per (run_id, agent_name), enforced by the primary key."""

    __tablename__ = "forum_control_threads"
    run_id: Mapped[str] = mapped_column(NAME, primary_key=True)
    agent_name: Mapped[str] = mapped_column(NAME, primary_key=True)
    thread_id: Mapped[str] = mapped_column(ID, unique=True)
    ticket: Mapped[str] = mapped_column(NAME)
    created_at: Mapped[datetime]


class ForumDeadLetter(Base):
    """A message that could not be processed, kept for a human to inspect and redrive."""

    __tablename__ = "forum_dead_letters"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(ID, unique=True)
    kind: Mapped[str] = mapped_column(SHORT)
    task_name: Mapped[str] = mapped_column(String(128))
    topic: Mapped[str] = mapped_column(String(128))
    payload: Mapped[dict[str, Any]]
    error: Mapped[str] = mapped_column(Text)
    traceback: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(SHORT)  # dead | redriven | purged
    run_id: Mapped[str | None] = mapped_column(NAME)
    first_failed_at: Mapped[datetime]
    last_failed_at: Mapped[datetime]
    redriven_at: Mapped[datetime | None]
    __table_args__ = (Index("ix_forum_dead_letters_run_status", "run_id", "status"),)


class ForumEscalation(Base):
    """An SLA escalation raised once per (thread, tier, subject)."""

    __tablename__ = "forum_escalations"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    thread_id: Mapped[str] = mapped_column(ID)
    tier: Mapped[str] = mapped_column(SHORT)
    # What is escalated: the guidance request's event id, or '' for the thread itself.
    subject: Mapped[str] = mapped_column(ID, default="")
    run_id: Mapped[str | None] = mapped_column(NAME)
    event_id: Mapped[str] = mapped_column(ID, unique=True)
    reason: Mapped[str] = mapped_column(Text)
    raised_at: Mapped[datetime]
    __table_args__ = (
        UniqueConstraint("thread_id", "tier", "subject", name="uq_forum_escalations_thread_tier"),
        Index("ix_forum_escalations_run_id", "run_id"),
    )


class Run(Base):
    """A run of agents on tickets; its status moves only through the lifecycle rules."""

    __tablename__ = "runs"
    run_id: Mapped[str] = mapped_column(NAME, primary_key=True)
    status: Mapped[str] = mapped_column(SHORT)
    mode: Mapped[str] = mapped_column(SHORT)  # run | bootstrap
    tickets: Mapped[list[str]] = mapped_column(JSON)
    control_epoch: Mapped[int] = mapped_column(Integer, default=1)
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    # Changes to what the run's snapshot shows from other tables, counted by triggers
    # (migration 0010); never written by the code: see RunSnapshotDoc.
    facts_version: Mapped[int] = mapped_column(Integer, server_default="0")
    __table_args__ = (Index("ix_runs_status_created", "status", "created_at"),)


class RunAgent(Base):
    """An agent taking part in a run."""

    __tablename__ = "run_agents"
    run_id: Mapped[str] = mapped_column(NAME, primary_key=True)
    # Indexed (migration 0007): an agent's runs are read when its commands are accepted.
    agent_name: Mapped[str] = mapped_column(NAME, primary_key=True, index=True)
    status: Mapped[str] = mapped_column(SHORT)
    last_signal_at: Mapped[datetime | None]
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class RunBrief(Base):
    """The bootstrap brief of a run; its done_criteria gate the close."""

    __tablename__ = "run_briefs"
    run_id: Mapped[str] = mapped_column(NAME, primary_key=True)
    ticket: Mapped[str] = mapped_column(NAME)
    goal: Mapped[str] = mapped_column(Text)
    scope: Mapped[str] = mapped_column(Text)
    done_criteria: Mapped[str] = mapped_column(Text)
    constraints: Mapped[str] = mapped_column(Text)
    merge_intent: Mapped[str] = mapped_column(NAME)
    qa: Mapped[list[dict[str, str]]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class RunSnapshotDoc(Base):
    """A run's snapshot parts that do not depend on the clock, as read at ``facts_version``.

    A cache (services/snapshot_docs.py): a snapshot uses it while ``runs.facts_version`` is
    still that version (triggers on the seven tables it is made from count every change:
    migration 0010), and remakes and stores it otherwise. Dropping every row loses nothing.
    """

    __tablename__ = "run_snapshot_docs"
    run_id: Mapped[str] = mapped_column(NAME, primary_key=True)
    facts_version: Mapped[int] = mapped_column(Integer)
    doc: Mapped[bytes] = mapped_column(LargeBinary)


class RunEvent(Base):
    """Run-level audit: every status transition with its cause."""

    __tablename__ = "run_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    run_id: Mapped[str] = mapped_column(NAME, index=True)
    event_type: Mapped[str] = mapped_column(String(64))
    from_status: Mapped[str | None] = mapped_column(SHORT)
    to_status: Mapped[str | None] = mapped_column(SHORT)
    reason: Mapped[str] = mapped_column(Text)
    cause_event_id: Mapped[str | None] = mapped_column(ID)
    created_at: Mapped[datetime]


# --- Control state read model (issue 12, target 1; migration 0005) ------------------------------


class RunAgentControl(Base):
    """Read model: each agent's control state, advanced by every control signal.

    Written by the ``control_signal`` handler in the transaction that logs the signal
    (metawsm.domain.control.advance), refilled from the log by ``projections rebuild``. Epoch
    independent: completion and validation keep their epoch (see ``ControlState``).
    """

    __tablename__ = "run_agent_controls"
    run_id: Mapped[str] = mapped_column(NAME, primary_key=True)
    agent_name: Mapped[str] = mapped_column(NAME, primary_key=True)
    thread_id: Mapped[str | None] = mapped_column(ID)
    pending: Mapped[bool] = mapped_column(Boolean, default=False)
    question: Mapped[str | None] = mapped_column(Text)
    context: Mapped[str | None] = mapped_column(Text)
    asked_at: Mapped[datetime | None]
    request_event_id: Mapped[str | None] = mapped_column(ID)
    request_seq: Mapped[int] = mapped_column(Integer, default=0)
    completion_epoch: Mapped[int | None] = mapped_column(Integer)
    summary: Mapped[str | None] = mapped_column(Text)
    validation_epoch: Mapped[int | None] = mapped_column(Integer)
    validation_status: Mapped[str | None] = mapped_column(Text)
    validation_done_criteria: Mapped[str | None] = mapped_column(Text)
    last_signal_at: Mapped[datetime | None]
    last_event_id: Mapped[str | None] = mapped_column(ID)
    last_thread_seq: Mapped[int] = mapped_column(Integer, default=0)


# --- end of the control state read model ---------------------------------------------------------


# --- Operations: metrics counters and process heartbeats (metawsm.ops, migration 0006) ---------


class OpsCounter(Base):
    """One shard of a counter or histogram series, bumped in the transaction of the work it counts.

    ``name`` is the series (a counter, or ``<histogram>:bucket`` / ``<histogram>:sum``),
    ``labels`` its canonical label text (``command_type="open_thread"``, ``le="0.25"``, or '').
    Writers on PostgreSQL spread over a few ``shard`` rows (by process) so concurrent
    transactions rarely wait on one row; the exporter sums the shards (metawsm.ops.counters).
    """

    __tablename__ = "ops_counters"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    labels: Mapped[str] = mapped_column(String(256), primary_key=True)
    shard: Mapped[int] = mapped_column(Integer, primary_key=True)
    value: Mapped[float] = mapped_column(Float)


class OpsHeartbeat(Base):
    """The last sign of life of one process in one role (a worker's role, or ``beat``).

    Liveness comes from the age of ``beat_at``, so a SIGKILLed process ages out by itself.
    """

    __tablename__ = "ops_heartbeats"
    process: Mapped[str] = mapped_column(String(256), primary_key=True)
    role: Mapped[str] = mapped_column(SHORT, primary_key=True)
    started_at: Mapped[datetime]
    beat_at: Mapped[datetime]
    __table_args__ = (Index("ix_ops_heartbeats_role_beat", "role", "beat_at"),)


class OpsGuidancePending(Base):
    """The guidance request still unanswered on a control thread (one per agent of a run).

    Written by the control-signal handler in its transaction: a request replaces the row, an
    answer deletes it (and is timed against it). The exporter counts these rows instead of
    folding every active run's signals at each scrape.
    """

    __tablename__ = "ops_guidance_pending"
    thread_id: Mapped[str] = mapped_column(ID, primary_key=True)
    run_id: Mapped[str] = mapped_column(NAME, index=True)
    agent_name: Mapped[str] = mapped_column(NAME)
    request_event_id: Mapped[str] = mapped_column(ID)
    asked_at: Mapped[datetime]


# --- end of the operations block ----------------------------------------------------------------


class AuthToken(Base):
    """A bearer token and the identity it proves (metawsm.services.tokens, migration 0007).

    Only ``token_hash`` (SHA-256 hex of the token) is stored: the token is printed once. A token
    is valid until ``expires_at`` (None: no expiry) unless ``revoked_at`` is set. ``created_by``
    and ``revoked_by`` are ``type/name`` of the identity that did it.
    """

    __tablename__ = "auth_tokens"
    token_id: Mapped[str] = mapped_column(ID, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    actor_type: Mapped[str] = mapped_column(SHORT)
    actor_name: Mapped[str] = mapped_column(NAME)
    run_id: Mapped[str | None] = mapped_column(NAME)
    created_by: Mapped[str] = mapped_column(String(600))
    created_at: Mapped[datetime]
    expires_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    revoked_by: Mapped[str | None] = mapped_column(String(600))


# The full-text search index (metawsm.services.search_index) is not a model: its shape differs
# per dialect (an FTS5 virtual table and its shadow tables on SQLite, a table with a tsvector
# column and a GIN index on PostgreSQL), which SQLAlchemy metadata cannot describe as one table.
# Migration 0004 creates it; the drift check leaves these names out (is_search_index_table).
SEARCH_INDEX_TABLE = "forum_search"


def is_search_index_table(name: str | None) -> bool:
    """True for the search index table and its SQLite FTS5 shadow tables (``forum_search_*``)."""
    return name is not None and (
        name == SEARCH_INDEX_TABLE or name.startswith(f"{SEARCH_INDEX_TABLE}_")
    )


def table(model: type[Base]) -> Table:
    """The Core table of a mapped class, typed (``__table__`` is only a FromClause to mypy).

    The hot paths execute prebuilt Core statements on these tables (docs/performance.md).
    """
    mapped = model.__table__
    assert isinstance(mapped, Table)
    return mapped
