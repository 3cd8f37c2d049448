"""Operations: metric counters and process heartbeats (issue 13, metrics and health).

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-06

- ``ops_counters``: counter and histogram series bumped in the transaction of the work they
  count (metawsm.ops.counters), summed over shards by the exporter.
- ``ops_heartbeats``: the last sign of life of each worker process per role, and of beat.
- ``ops_guidance_pending``: the unanswered guidance request of each control thread, seeded here
  by folding the control signals already logged (the last request or answer of a thread decides).

The counters that the ledger and the other tables can tell are seeded from them, so a database
written before this revision does not start its totals at zero: commands accepted, applied and
rejected by type (ledger rows by status), commands dead (dead letters of kind command, by their
command's type), dead-letter redrives (letters with a redrive time) and escalations by tier.
Histograms start empty: their observations were never kept.

Frozen: the SQL is written out here, not imported.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_TYPE_LABEL = "'command_type=\"' || command_type || '\"'"
SEEDS = (
    "INSERT INTO ops_counters (name, labels, shard, value)"
    f" SELECT 'metawsm_commands_accepted_total', {_TYPE_LABEL}, 0, COUNT(*)"
    " FROM forum_commands GROUP BY command_type",
    "INSERT INTO ops_counters (name, labels, shard, value)"
    f" SELECT 'metawsm_commands_' || status || '_total', {_TYPE_LABEL}, 0, COUNT(*)"
    " FROM forum_commands WHERE status IN ('applied', 'rejected')"
    " GROUP BY status, command_type",
    "INSERT INTO ops_counters (name, labels, shard, value)"
    " SELECT 'metawsm_commands_dead_total', 'command_type=\"' || c.command_type || '\"', 0,"
    " COUNT(*) FROM forum_dead_letters d JOIN forum_commands c ON c.command_id = d.message_id"
    " WHERE d.kind = 'command' GROUP BY c.command_type",
    "INSERT INTO ops_counters (name, labels, shard, value)"
    " SELECT 'metawsm_dead_letter_redrives_total', '', 0, COUNT(*)"
    " FROM forum_dead_letters WHERE redriven_at IS NOT NULL HAVING COUNT(*) > 0",
    "INSERT INTO ops_counters (name, labels, shard, value)"
    " SELECT 'metawsm_escalations_total', 'tier=\"' || tier || '\"', 0, COUNT(*)"
    " FROM forum_escalations GROUP BY tier",
)


def upgrade() -> None:
    """Create the three tables and seed what the existing rows can tell."""
    op.create_table(
        "ops_counters",
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("labels", sa.String(256), nullable=False),
        sa.Column("shard", sa.Integer(), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.PrimaryKeyConstraint("name", "labels", "shard", name=op.f("pk_ops_counters")),
    )
    op.create_table(
        "ops_heartbeats",
        sa.Column("process", sa.String(256), nullable=False),
        sa.Column("role", sa.String(32), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("beat_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("process", "role", name=op.f("pk_ops_heartbeats")),
    )
    op.create_index(op.f("ix_ops_heartbeats_role_beat"), "ops_heartbeats", ["role", "beat_at"])
    op.create_table(
        "ops_guidance_pending",
        sa.Column("thread_id", sa.String(128), nullable=False),
        sa.Column("run_id", sa.String(512), nullable=False),
        sa.Column("agent_name", sa.String(512), nullable=False),
        sa.Column("request_event_id", sa.String(128), nullable=False),
        sa.Column("asked_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("thread_id", name=op.f("pk_ops_guidance_pending")),
    )
    op.create_index(op.f("ix_ops_guidance_pending_run_id"), "ops_guidance_pending", ["run_id"])
    for statement in SEEDS:
        op.execute(statement)
    _seed_guidance(op.get_bind())


_EVENTS = sa.table(
    "forum_events",
    sa.column("thread_id", sa.String),
    sa.column("thread_seq", sa.Integer),
    sa.column("run_id", sa.String),
    sa.column("agent_name", sa.String),
    sa.column("event_id", sa.String),
    sa.column("event_type", sa.String),
    sa.column("occurred_at", sa.DateTime(timezone=True)),
    sa.column("payload", sa.JSON),
)
_PENDING = sa.table(
    "ops_guidance_pending",
    sa.column("thread_id", sa.String),
    sa.column("run_id", sa.String),
    sa.column("agent_name", sa.String),
    sa.column("request_event_id", sa.String),
    sa.column("asked_at", sa.DateTime(timezone=True)),
)


def _seed_guidance(conn: sa.Connection) -> None:
    """Per control thread, the last guidance request when no answer follows it."""
    rows = conn.execute(
        sa.select(
            _EVENTS.c.thread_id,
            _EVENTS.c.run_id,
            _EVENTS.c.agent_name,
            _EVENTS.c.event_id,
            _EVENTS.c.occurred_at,
            _EVENTS.c.payload,
        )
        .where(_EVENTS.c.event_type == "forum.control.signal")
        .order_by(_EVENTS.c.thread_id, _EVENTS.c.thread_seq)
    )
    pending: dict[str, dict[str, object] | None] = {}
    for thread_id, run_id, agent, event_id, occurred_at, payload in rows:
        kind = ((payload or {}).get("signal") or {}).get("control_type")
        if kind == "guidance_request" and thread_id and run_id and agent:
            pending[thread_id] = {
                "thread_id": thread_id,
                "run_id": run_id,
                "agent_name": agent,
                "request_event_id": event_id,
                "asked_at": occurred_at,
            }
        elif kind == "guidance_answer":
            pending[thread_id] = None
    seeded = [row for row in pending.values() if row is not None]
    if seeded:
        conn.execute(sa.insert(_PENDING), seeded)


def downgrade() -> None:
    """Drop the three tables."""
    op.drop_index(op.f("ix_ops_guidance_pending_run_id"), table_name="ops_guidance_pending")
    op.drop_table("ops_guidance_pending")
    op.drop_index(op.f("ix_ops_heartbeats_role_beat"), table_name="ops_heartbeats")
    op.drop_table("ops_heartbeats")
    op.drop_table("ops_counters")
