"""Initial schema: every table, index and constraint of metawsm.storage.models.

Revision ID: 0001
Revises:
Create Date: 2026-11-28

Frozen: later model changes go in new revisions, so the column types are spelled out here rather
than imported (UTCDateTime is a timezone-aware DateTime as far as the database is concerned).
Names are final (``op.f``): they follow the models' naming convention, written out.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(length=128)
NAME = sa.String(length=512)
SHORT = sa.String(length=32)
TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    """Create every table of the initial schema, with its indexes and constraints."""
    op.create_table(
        "forum_threads",
        sa.Column("thread_id", ID, nullable=False),
        sa.Column("ticket", NAME, nullable=False),
        sa.Column("run_id", NAME, nullable=True),
        sa.Column("agent_name", NAME, nullable=True),
        sa.Column("title", NAME, nullable=False),
        sa.Column("state", SHORT, nullable=False),
        sa.Column("priority", SHORT, nullable=False),
        sa.Column("assignee_type", SHORT, nullable=True),
        sa.Column("assignee_name", NAME, nullable=True),
        sa.Column("opened_by_type", SHORT, nullable=False),
        sa.Column("opened_by_name", NAME, nullable=False),
        sa.Column("is_control", sa.Boolean(), nullable=False),
        sa.Column("last_thread_seq", sa.Integer(), nullable=False),
        sa.Column("opened_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("closed_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("thread_id", name=op.f("pk_forum_threads")),
    )
    op.create_index(
        op.f("ix_forum_threads_ticket_state_priority"),
        "forum_threads",
        ["ticket", "state", "priority"],
    )
    op.create_table(
        "forum_posts",
        sa.Column("post_id", ID, nullable=False),
        sa.Column("thread_id", ID, nullable=False),
        sa.Column("event_id", ID, nullable=False),
        sa.Column("author_type", SHORT, nullable=False),
        sa.Column("author_name", NAME, nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("kind", SHORT, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("post_id", name=op.f("pk_forum_posts")),
        sa.UniqueConstraint("event_id", name=op.f("uq_forum_posts_event_id")),
    )
    op.create_index(
        op.f("ix_forum_posts_thread_created"), "forum_posts", ["thread_id", "created_at"]
    )
    op.create_table(
        "forum_assignments",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("thread_id", ID, nullable=False),
        sa.Column("event_id", ID, nullable=False),
        sa.Column("from_assignee_type", SHORT, nullable=True),
        sa.Column("from_assignee_name", NAME, nullable=True),
        sa.Column("to_assignee_type", SHORT, nullable=False),
        sa.Column("to_assignee_name", NAME, nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("changed_by_type", SHORT, nullable=False),
        sa.Column("changed_by_name", NAME, nullable=False),
        sa.Column("changed_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forum_assignments")),
        sa.UniqueConstraint("event_id", name=op.f("uq_forum_assignments_event_id")),
    )
    op.create_index(op.f("ix_forum_assignments_thread_id"), "forum_assignments", ["thread_id"])
    op.create_table(
        "forum_state_transitions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("thread_id", ID, nullable=False),
        sa.Column("event_id", ID, nullable=False),
        sa.Column("from_state", SHORT, nullable=False),
        sa.Column("to_state", SHORT, nullable=False),
        sa.Column("changed_by_type", SHORT, nullable=False),
        sa.Column("changed_by_name", NAME, nullable=False),
        sa.Column("changed_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forum_state_transitions")),
        sa.UniqueConstraint("event_id", name=op.f("uq_forum_state_transitions_event_id")),
    )
    op.create_index(
        op.f("ix_forum_state_transitions_thread_id"), "forum_state_transitions", ["thread_id"]
    )
    op.create_table(
        "forum_events",
        sa.Column("sequence", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("event_id", ID, nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("event_version", sa.Integer(), nullable=False),
        sa.Column("occurred_at", TS, nullable=False),
        sa.Column("recorded_at", TS, nullable=False),
        sa.Column("thread_id", ID, nullable=True),
        sa.Column("thread_seq", sa.Integer(), nullable=True),
        sa.Column("run_id", NAME, nullable=True),
        sa.Column("ticket", NAME, nullable=True),
        sa.Column("agent_name", NAME, nullable=True),
        sa.Column("actor_type", SHORT, nullable=False),
        sa.Column("actor_name", NAME, nullable=False),
        sa.Column("correlation_id", ID, nullable=True),
        sa.Column("causation_id", ID, nullable=True),
        sa.Column("command_id", ID, nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("sequence", name=op.f("pk_forum_events")),
        sa.UniqueConstraint("event_id", name=op.f("uq_forum_events_event_id")),
        sa.UniqueConstraint("thread_id", "thread_seq", name=op.f("uq_forum_events_thread_seq")),
    )
    op.create_index(op.f("ix_forum_events_command_id"), "forum_events", ["command_id"])
    op.create_index(op.f("ix_forum_events_run_sequence"), "forum_events", ["run_id", "sequence"])
    op.create_index(op.f("ix_forum_events_ticket_sequence"), "forum_events", ["ticket", "sequence"])
    op.create_table(
        "forum_commands",
        sa.Column("command_id", ID, nullable=False),
        sa.Column("command_type", SHORT, nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", SHORT, nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("thread_id", ID, nullable=True),
        sa.Column("delivery_attempts", sa.Integer(), nullable=False),
        sa.Column("accepted_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("finished_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("command_id", name=op.f("pk_forum_commands")),
    )
    op.create_index(
        op.f("ix_forum_commands_status_updated"), "forum_commands", ["status", "updated_at"]
    )
    op.create_table(
        "forum_outbox",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("message_id", ID, nullable=False),
        sa.Column("kind", SHORT, nullable=False),
        sa.Column("topic", ID, nullable=False),
        sa.Column("message_key", ID, nullable=True),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", SHORT, nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("publish_count", sa.Integer(), nullable=False),
        sa.Column("deliveries", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", TS, nullable=False),
        sa.Column("lease_until", TS, nullable=True),
        sa.Column("lease_owner", sa.String(length=64), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("sent_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forum_outbox")),
        sa.UniqueConstraint("message_id", name=op.f("uq_forum_outbox_message_id")),
    )
    op.create_index(
        op.f("ix_forum_outbox_status_next"), "forum_outbox", ["status", "next_attempt_at"]
    )
    op.create_index(op.f("ix_forum_outbox_status_sent"), "forum_outbox", ["status", "sent_at"])
    op.create_table(
        "forum_thread_views",
        sa.Column("thread_id", ID, nullable=False),
        sa.Column("ticket", NAME, nullable=False),
        sa.Column("run_id", NAME, nullable=True),
        sa.Column("agent_name", NAME, nullable=True),
        sa.Column("title", NAME, nullable=False),
        sa.Column("state", SHORT, nullable=False),
        sa.Column("priority", SHORT, nullable=False),
        sa.Column("assignee_type", SHORT, nullable=True),
        sa.Column("assignee_name", NAME, nullable=True),
        sa.Column("opened_by_type", SHORT, nullable=False),
        sa.Column("opened_by_name", NAME, nullable=False),
        sa.Column("is_control", sa.Boolean(), nullable=False),
        sa.Column("posts_count", sa.Integer(), nullable=False),
        sa.Column("last_post_at", TS, nullable=True),
        sa.Column("last_post_by_type", SHORT, nullable=True),
        sa.Column("last_post_by_name", NAME, nullable=True),
        sa.Column("opened_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("closed_at", TS, nullable=True),
        sa.Column("last_event_sequence", sa.BigInteger(), nullable=False),
        sa.Column("last_thread_seq", sa.Integer(), nullable=False),
        sa.Column("last_actor_type", SHORT, nullable=True),
        sa.Column("last_non_system_actor_type", SHORT, nullable=True),
        sa.Column("last_human_or_operator_sequence", sa.BigInteger(), nullable=False),
        sa.Column("last_agent_sequence", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("thread_id", name=op.f("pk_forum_thread_views")),
    )
    op.create_index(
        op.f("ix_forum_thread_views_filters"),
        "forum_thread_views",
        ["ticket", "state", "priority", "updated_at"],
    )
    op.create_index(
        op.f("ix_forum_thread_views_run"), "forum_thread_views", ["run_id", "last_event_sequence"]
    )
    op.create_table(
        "forum_thread_stats",
        sa.Column("ticket", NAME, nullable=False),
        sa.Column("run_id", NAME, nullable=False),
        sa.Column("state", SHORT, nullable=False),
        sa.Column("priority", SHORT, nullable=False),
        sa.Column("thread_count", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint(
            "ticket", "run_id", "state", "priority", name=op.f("pk_forum_thread_stats")
        ),
    )
    op.create_table(
        "forum_thread_reads",
        sa.Column("thread_id", ID, nullable=False),
        sa.Column("viewer_type", SHORT, nullable=False),
        sa.Column("viewer_id", NAME, nullable=False),
        sa.Column("last_seen_event_sequence", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint(
            "thread_id", "viewer_type", "viewer_id", name=op.f("pk_forum_thread_reads")
        ),
    )
    op.create_table(
        "forum_projection_events",
        sa.Column("projection", sa.String(length=64), nullable=False),
        sa.Column("event_id", ID, nullable=False),
        sa.Column("applied_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("projection", "event_id", name=op.f("pk_forum_projection_events")),
    )
    op.create_table(
        "forum_control_threads",
        sa.Column("run_id", NAME, nullable=False),
        sa.Column("agent_name", NAME, nullable=False),
        sa.Column("thread_id", ID, nullable=False),
        sa.Column("ticket", NAME, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "agent_name", name=op.f("pk_forum_control_threads")),
        sa.UniqueConstraint("thread_id", name=op.f("uq_forum_control_threads_thread_id")),
    )
    op.create_table(
        "forum_dead_letters",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("message_id", ID, nullable=False),
        sa.Column("kind", SHORT, nullable=False),
        sa.Column("task_name", ID, nullable=False),
        sa.Column("topic", ID, nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=False),
        sa.Column("traceback", sa.Text(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("status", SHORT, nullable=False),
        sa.Column("run_id", NAME, nullable=True),
        sa.Column("first_failed_at", TS, nullable=False),
        sa.Column("last_failed_at", TS, nullable=False),
        sa.Column("redriven_at", TS, nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forum_dead_letters")),
        sa.UniqueConstraint("message_id", name=op.f("uq_forum_dead_letters_message_id")),
    )
    op.create_table(
        "forum_escalations",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("thread_id", ID, nullable=False),
        sa.Column("tier", SHORT, nullable=False),
        sa.Column("subject", ID, nullable=False),
        sa.Column("run_id", NAME, nullable=True),
        sa.Column("event_id", ID, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("raised_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_forum_escalations")),
        sa.UniqueConstraint("event_id", name=op.f("uq_forum_escalations_event_id")),
        sa.UniqueConstraint(
            "thread_id", "tier", "subject", name=op.f("uq_forum_escalations_thread_tier")
        ),
    )
    op.create_table(
        "runs",
        sa.Column("run_id", NAME, nullable=False),
        sa.Column("status", SHORT, nullable=False),
        sa.Column("mode", SHORT, nullable=False),
        sa.Column("tickets", sa.JSON(), nullable=False),
        sa.Column("control_epoch", sa.Integer(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_runs")),
    )
    op.create_table(
        "run_agents",
        sa.Column("run_id", NAME, nullable=False),
        sa.Column("agent_name", NAME, nullable=False),
        sa.Column("status", SHORT, nullable=False),
        sa.Column("last_signal_at", TS, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("run_id", "agent_name", name=op.f("pk_run_agents")),
    )
    op.create_table(
        "run_briefs",
        sa.Column("run_id", NAME, nullable=False),
        sa.Column("ticket", NAME, nullable=False),
        sa.Column("goal", sa.Text(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("done_criteria", sa.Text(), nullable=False),
        sa.Column("constraints", sa.Text(), nullable=False),
        sa.Column("merge_intent", NAME, nullable=False),
        sa.Column("qa", sa.JSON(), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_run_briefs")),
    )
    op.create_table(
        "run_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("run_id", NAME, nullable=False),
        sa.Column("event_type", sa.String(length=64), nullable=False),
        sa.Column("from_status", SHORT, nullable=True),
        sa.Column("to_status", SHORT, nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("cause_event_id", ID, nullable=True),
        sa.Column("created_at", TS, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_events")),
    )
    op.create_index(op.f("ix_run_events_run_id"), "run_events", ["run_id"])


def downgrade() -> None:
    """Drop every table of the initial schema (their indexes go with them)."""
    op.drop_table("run_events")
    op.drop_table("run_briefs")
    op.drop_table("run_agents")
    op.drop_table("runs")
    op.drop_table("forum_escalations")
    op.drop_table("forum_dead_letters")
    op.drop_table("forum_control_threads")
    op.drop_table("forum_projection_events")
    op.drop_table("forum_thread_reads")
    op.drop_table("forum_thread_stats")
    op.drop_table("forum_thread_views")
    op.drop_table("forum_outbox")
    op.drop_table("forum_commands")
    op.drop_table("forum_events")
    op.drop_table("forum_state_transitions")
    op.drop_table("forum_assignments")
    op.drop_table("forum_posts")
    op.drop_table("forum_threads")
