"""The tables, declared once as SQLAlchemy Core (columns, types, indexes, what each holds).

Alembic owns the schema (migrations/); these describe it, and ``metawsm db check`` and the
migration tests fail when the two differ. The ORM classes of ``metawsm.storage.models`` are
mapped onto these tables for the code that works with a ``Session``; the paths that must start
fast (``projections rebuild``; the command line's reads and writes go through the driver) use
the tables alone and never import the ORM and the mapping (~0.1 s of a process's start).

Command side: threads, posts, assignments, state transitions, the event log, the command ledger,
the outbox, control threads, dead letters, escalations and runs. Read side: thread views, stats,
reads (seen watermarks), the projection ledger and the agents' control states. Operations:
counters, heartbeats and pending guidance. Identities: bearer tokens.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
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
from sqlalchemy.types import TypeEngine

from metawsm.storage.types import UTCDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING)
"""Every table, with a stable constraint naming convention (for migrations)."""

ID = String(128)
NAME = String(512)
SHORT = String(32)
UTC = UTCDateTime()


def required(name: str, type_: TypeEngine[Any], **options: Any) -> Column[Any]:
    """A ``NOT NULL`` column (not part of the primary key)."""
    return Column(name, type_, nullable=False, **options)


def optional(name: str, type_: TypeEngine[Any], **options: Any) -> Column[Any]:
    """A nullable column."""
    return Column(name, type_, nullable=True, **options)


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


# Authoritative thread state (command side).
forum_threads = Table(
    "forum_threads",
    metadata,
    Column("thread_id", ID, primary_key=True),
    required("ticket", NAME),
    optional("run_id", NAME),
    optional("agent_name", NAME),
    required("title", NAME),
    required("state", SHORT),
    required("priority", SHORT),
    optional("assignee_type", SHORT),
    optional("assignee_name", NAME),
    required("opened_by_type", SHORT),
    required("opened_by_name", NAME),
    required("is_control", Boolean(), default=False),
    required("last_thread_seq", Integer(), default=0),
    required("opened_at", UTC),
    required("updated_at", UTC),
    optional("closed_at", UTC),
    Index("ix_forum_threads_ticket_state_priority", "ticket", "state", "priority"),
)


# A post on a thread (the opening post, replies, answers and control signals).
forum_posts = Table(
    "forum_posts",
    metadata,
    Column("post_id", ID, primary_key=True),
    required("thread_id", ID),
    required("event_id", ID, unique=True),
    required("author_type", SHORT),
    required("author_name", NAME),
    required("body", Text()),
    required("kind", SHORT),
    required("created_at", UTC),
    Index("ix_forum_posts_thread_created", "thread_id", "created_at"),
)


# Assignment history: one row per assign command applied.
forum_assignments = Table(
    "forum_assignments",
    metadata,
    Column("id", Integer(), primary_key=True, autoincrement=True),
    required("thread_id", ID, index=True),
    required("event_id", ID, unique=True),
    optional("from_assignee_type", SHORT),
    optional("from_assignee_name", NAME),
    required("to_assignee_type", SHORT),
    required("to_assignee_name", NAME),
    optional("note", Text()),
    required("changed_by_type", SHORT),
    required("changed_by_name", NAME),
    required("changed_at", UTC),
)


# State history: one row per state change (including close).
forum_state_transitions = Table(
    "forum_state_transitions",
    metadata,
    Column("id", Integer(), primary_key=True, autoincrement=True),
    required("thread_id", ID, index=True),
    required("event_id", ID, unique=True),
    required("from_state", SHORT),
    required("to_state", SHORT),
    required("changed_by_type", SHORT),
    required("changed_by_name", NAME),
    required("changed_at", UTC),
)


# The append-only event log. ``sequence`` is global and assigned in commit order.
forum_events = Table(
    "forum_events",
    metadata,
    Column("sequence", BigInteger(), primary_key=True, autoincrement=False),
    required("event_id", ID, unique=True),
    required("event_type", String(64)),
    required("event_version", Integer()),
    required("occurred_at", UTC),
    required("recorded_at", UTC),
    optional("thread_id", ID),
    optional("thread_seq", Integer()),
    optional("run_id", NAME),
    optional("ticket", NAME),
    optional("agent_name", NAME),
    required("actor_type", SHORT),
    required("actor_name", NAME),
    optional("correlation_id", ID),
    optional("causation_id", ID),
    optional("command_id", ID, index=True),
    required("payload", JSON()),
    UniqueConstraint("thread_id", "thread_seq", name="uq_forum_events_thread_seq"),
    Index("ix_forum_events_ticket_sequence", "ticket", "sequence"),
    # A run's events in order, with the type and time of each: the snapshot's last event of
    # every run from the index alone (migration 0009).
    Index("ix_forum_events_run_sequence", "run_id", "sequence", "event_type", "occurred_at"),
    Index("ix_forum_events_run_type_sequence", "run_id", "event_type", "sequence"),
)


# The ledger of accepted commands and their outcome.
forum_commands = Table(
    "forum_commands",
    metadata,
    Column("command_id", ID, primary_key=True),
    required("command_type", SHORT),
    required("payload", JSON()),
    required("status", SHORT),  # accepted | applied | rejected | dead
    optional("reason", Text()),
    optional("thread_id", ID),
    required("delivery_attempts", Integer(), default=0),
    required("accepted_at", UTC),
    required("updated_at", UTC),
    optional("finished_at", UTC),
    # The bearer token the command was accepted with (None: a local identity; migration 0007).
    optional("token_id", ID),
    Index("ix_forum_commands_status_updated", "status", "updated_at"),
    # Per-thread ordering: the commands of a thread accepted before this one, still open.
    Index("ix_forum_commands_thread_status_accepted", "thread_id", "status", "accepted_at"),
)


# Messages waiting to be, or already, published to the broker.
forum_outbox = Table(
    "forum_outbox",
    metadata,
    Column("id", Integer(), primary_key=True, autoincrement=True),
    required("message_id", ID, unique=True),
    required("kind", SHORT),  # command | event
    required("topic", ID),
    optional("message_key", ID),
    required("payload", JSON()),
    required("status", SHORT),  # pending | processing | sent
    required("attempts", Integer(), default=0),
    required("publish_count", Integer(), default=0),
    # Deliveries its consumer started (counted before the work, so a worker killed mid-task
    # cannot loop forever on one message).
    required("deliveries", Integer(), default=0),
    required("next_attempt_at", UTC),
    optional("lease_until", UTC),
    optional("lease_owner", String(64)),
    optional("last_error", Text()),
    required("created_at", UTC),
    required("updated_at", UTC),
    optional("sent_at", UTC),
    # When its consumer's first attempt failed (kept across retries, for the dead letter).
    optional("first_failed_at", UTC),
    Index("ix_forum_outbox_status_next", "status", "next_attempt_at"),
    Index("ix_forum_outbox_status_sent", "status", "sent_at"),
)


# Read model: one row per thread for lists, detail, queues (unseen/unanswered).
forum_thread_views = Table(
    "forum_thread_views",
    metadata,
    Column("thread_id", ID, primary_key=True),
    required("ticket", NAME),
    optional("run_id", NAME),
    optional("agent_name", NAME),
    required("title", NAME),
    required("state", SHORT),
    required("priority", SHORT),
    optional("assignee_type", SHORT),
    optional("assignee_name", NAME),
    required("opened_by_type", SHORT),
    required("opened_by_name", NAME),
    required("is_control", Boolean(), default=False),
    required("posts_count", Integer()),
    optional("last_post_at", UTC),
    optional("last_post_by_type", SHORT),
    optional("last_post_by_name", NAME),
    required("opened_at", UTC),
    required("updated_at", UTC),
    optional("closed_at", UTC),
    required("last_event_sequence", BigInteger()),
    required("last_thread_seq", Integer()),
    optional("last_actor_type", SHORT),
    optional("last_non_system_actor_type", SHORT),
    required("last_human_or_operator_sequence", BigInteger(), default=0),
    required("last_agent_sequence", BigInteger(), default=0),
    # Derived by the fold (metawsm.domain.views): 4 urgent .. 1 low, and the unanswered rule.
    required("urgency", Integer(), default=0),
    required("is_unanswered", Boolean(), default=False),
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
    Index("ix_forum_thread_views_unanswered", "is_unanswered", "urgency", "last_event_sequence"),
)


# Read model: thread counts per (ticket, run_id, state, priority); run_id '' = no run.
forum_thread_stats = Table(
    "forum_thread_stats",
    metadata,
    Column("ticket", NAME, primary_key=True),
    Column("run_id", NAME, primary_key=True),
    Column("state", SHORT, primary_key=True),
    Column("priority", SHORT, primary_key=True),
    required("thread_count", Integer()),
)


# Per-viewer 'last seen' watermark; only moves forward.
forum_thread_reads = Table(
    "forum_thread_reads",
    metadata,
    Column("thread_id", ID, primary_key=True),
    Column("viewer_type", SHORT, primary_key=True),
    Column("viewer_id", NAME, primary_key=True),
    required("last_seen_event_sequence", BigInteger(), default=0),
    required("updated_at", UTC),
)


# Projection ledger: (projection, event_id) applied; makes projectors idempotent.
forum_projection_events = Table(
    "forum_projection_events",
    metadata,
    Column("projection", String(64), primary_key=True),
    Column("event_id", ID, primary_key=True),
    required("applied_at", UTC),
)


# Exactly one control thread per (run_id, agent_name), enforced by the primary key.
forum_control_threads = Table(
    "forum_control_threads",
    metadata,
    Column("run_id", NAME, primary_key=True),
    Column("agent_name", NAME, primary_key=True),
    required("thread_id", ID, unique=True),
    required("ticket", NAME),
    required("created_at", UTC),
)


# A message that could not be processed, kept for a human to inspect and redrive.
forum_dead_letters = Table(
    "forum_dead_letters",
    metadata,
    Column("id", Integer(), primary_key=True, autoincrement=True),
    required("message_id", ID, unique=True),
    required("kind", SHORT),
    required("task_name", ID),
    required("topic", ID),
    required("payload", JSON()),
    required("error", Text()),
    optional("traceback", Text()),
    required("attempts", Integer()),
    required("status", SHORT),  # dead | redriven | purged
    optional("run_id", NAME),
    required("first_failed_at", UTC),
    required("last_failed_at", UTC),
    optional("redriven_at", UTC),
    Index("ix_forum_dead_letters_run_status", "run_id", "status"),
)


# An SLA escalation raised once per (thread, tier, subject).
forum_escalations = Table(
    "forum_escalations",
    metadata,
    Column("id", Integer(), primary_key=True, autoincrement=True),
    required("thread_id", ID),
    required("tier", SHORT),
    # What is escalated: the guidance request's event id, or '' for the thread itself.
    required("subject", ID, default=""),
    optional("run_id", NAME),
    required("event_id", ID, unique=True),
    required("reason", Text()),
    required("raised_at", UTC),
    UniqueConstraint("thread_id", "tier", "subject", name="uq_forum_escalations_thread_tier"),
    Index("ix_forum_escalations_run_id", "run_id"),
)


# A run of agents on tickets; its status moves only through the lifecycle rules.
runs = Table(
    "runs",
    metadata,
    Column("run_id", NAME, primary_key=True),
    required("status", SHORT),
    required("mode", SHORT),  # run | bootstrap
    required("tickets", JSON()),
    required("control_epoch", Integer(), default=1),
    optional("reason", Text()),
    required("created_at", UTC),
    required("updated_at", UTC),
    # Changes to what the run's snapshot shows from other tables, counted by triggers
    # (migration 0010); never written by the code: see RunSnapshotDoc.
    required("facts_version", Integer(), server_default="0"),
    Index("ix_runs_status_created", "status", "created_at"),
)


# An agent taking part in a run.
run_agents = Table(
    "run_agents",
    metadata,
    Column("run_id", NAME, primary_key=True),
    # Indexed (migration 0007): an agent's runs are read when its commands are accepted.
    Column("agent_name", NAME, primary_key=True, index=True),
    required("status", SHORT),
    optional("last_signal_at", UTC),
    required("created_at", UTC),
    required("updated_at", UTC),
)


# The bootstrap brief of a run; its done_criteria gate the close.
run_briefs = Table(
    "run_briefs",
    metadata,
    Column("run_id", NAME, primary_key=True),
    required("ticket", NAME),
    required("goal", Text()),
    required("scope", Text()),
    required("done_criteria", Text()),
    required("constraints", Text()),
    required("merge_intent", NAME),
    required("qa", JSON()),
    required("created_at", UTC),
    required("updated_at", UTC),
)


# A run's snapshot parts that do not depend on the clock, as read at ``facts_version``. A cache
# (services/snapshot_docs.py): a snapshot uses it while ``runs.facts_version`` is still that
# version (triggers on the seven tables it is made from count every change: migration 0010), and
# remakes and stores it otherwise. Dropping every row loses nothing.
run_snapshot_docs = Table(
    "run_snapshot_docs",
    metadata,
    Column("run_id", NAME, primary_key=True),
    required("facts_version", Integer()),
    required("doc", LargeBinary()),
)


# Run-level audit: every status transition with its cause.
run_events = Table(
    "run_events",
    metadata,
    Column("id", Integer(), primary_key=True, autoincrement=True),
    required("run_id", NAME, index=True),
    required("event_type", String(64)),
    optional("from_status", SHORT),
    optional("to_status", SHORT),
    required("reason", Text()),
    optional("cause_event_id", ID),
    required("created_at", UTC),
)


# Read model: each agent's control state, advanced by every control signal. Written by the
# ``control_signal`` handler in the transaction that logs the signal
# (metawsm.domain.control.advance), refilled from the log by ``projections rebuild``. Epoch
# independent: completion and validation keep their epoch (see ``ControlState``).
run_agent_controls = Table(
    "run_agent_controls",
    metadata,
    Column("run_id", NAME, primary_key=True),
    Column("agent_name", NAME, primary_key=True),
    optional("thread_id", ID),
    required("pending", Boolean(), default=False),
    optional("question", Text()),
    optional("context", Text()),
    optional("asked_at", UTC),
    optional("request_event_id", ID),
    required("request_seq", Integer(), default=0),
    optional("completion_epoch", Integer()),
    optional("summary", Text()),
    optional("validation_epoch", Integer()),
    optional("validation_status", Text()),
    optional("validation_done_criteria", Text()),
    optional("last_signal_at", UTC),
    optional("last_event_id", ID),
    required("last_thread_seq", Integer(), default=0),
)


# One shard of a counter or histogram series, bumped in the transaction of the work it counts.
# ``name`` is the series (a counter, or ``<histogram>:bucket`` / ``<histogram>:sum``), ``labels``
# its canonical label text (``command_type="open_thread"``, ``le="0.25"``, or ''). Writers on
# PostgreSQL spread over a few ``shard`` rows (by process) so concurrent transactions rarely wait
# on one row; the exporter sums the shards (metawsm.ops.counters).
ops_counters = Table(
    "ops_counters",
    metadata,
    Column("name", ID, primary_key=True),
    Column("labels", String(256), primary_key=True),
    Column("shard", Integer(), primary_key=True),
    required("value", Float()),
)


# The last sign of life of one process in one role (a worker's role, or ``beat``). Liveness comes
# from the age of ``beat_at``, so a SIGKILLed process ages out by itself.
ops_heartbeats = Table(
    "ops_heartbeats",
    metadata,
    Column("process", String(256), primary_key=True),
    Column("role", SHORT, primary_key=True),
    required("started_at", UTC),
    required("beat_at", UTC),
    Index("ix_ops_heartbeats_role_beat", "role", "beat_at"),
)


# The guidance request still unanswered on a control thread (one per agent of a run). Written by
# the control-signal handler in its transaction: a request replaces the row, an answer deletes it
# (and is timed against it). The exporter counts these rows instead of folding every active run's
# signals at each scrape.
ops_guidance_pending = Table(
    "ops_guidance_pending",
    metadata,
    Column("thread_id", ID, primary_key=True),
    required("run_id", NAME, index=True),
    required("agent_name", NAME),
    required("request_event_id", ID),
    required("asked_at", UTC),
)


# A bearer token and the identity it proves (metawsm.services.tokens, migration 0007). Only
# ``token_hash`` (SHA-256 hex of the token) is stored: the token is printed once. A token is valid
# until ``expires_at`` (None: no expiry) unless ``revoked_at`` is set. ``created_by`` and
# ``revoked_by`` are ``type/name`` of the identity that did it.
auth_tokens = Table(
    "auth_tokens",
    metadata,
    Column("token_id", ID, primary_key=True),
    required("token_hash", String(64), unique=True),
    required("actor_type", SHORT),
    required("actor_name", NAME),
    optional("run_id", NAME),
    required("created_by", String(600)),
    required("created_at", UTC),
    optional("expires_at", UTC),
    optional("revoked_at", UTC),
    optional("revoked_by", String(600)),
)


# A run created with an idempotency key (``POST /runs`` with ``Idempotency-Key``; migration
# 0011): the same key with the same request and caller answers that run again.
run_creations = Table(
    "run_creations",
    metadata,
    Column("idempotency_key", ID, primary_key=True),
    required("run_id", NAME),
    required("request", JSON()),  # tickets, agents, mode, brief: as the run was asked for
    required("created_by", String(600)),  # type/name of the caller
    required("created_at", UTC),
)


# The full-text search index (metawsm.services.search_index) is not described here: its shape
# differs per dialect (an FTS5 virtual table and its shadow tables on SQLite, a table with a
# tsvector column and a GIN index on PostgreSQL), which SQLAlchemy metadata cannot describe as
# one table. Migration 0004 creates it; the drift check leaves these names out
# (is_search_index_table).
SEARCH_INDEX_TABLE = "forum_search"


def is_search_index_table(name: str | None) -> bool:
    """True for the search index table and its SQLite FTS5 shadow tables (``forum_search_*``)."""
    return name is not None and (
        name == SEARCH_INDEX_TABLE or name.startswith(f"{SEARCH_INDEX_TABLE}_")
    )
