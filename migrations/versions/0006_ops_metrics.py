"""Operations: metric counters and process heartbeats (issue 13, metrics and health).

Revision ID: 0006
Revises: 0004
Create Date: 2026-12-06

- ``ops_counters``: counter and histogram series bumped in the transaction of the work they
  count (metawsm.ops.counters), summed over shards by the exporter.
- ``ops_heartbeats``: the last sign of life of each worker process per role, and of beat.

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
down_revision: str | None = "0004"
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
    """Create the two tables and seed the counters the existing rows can tell."""
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
    for statement in SEEDS:
        op.execute(statement)


def downgrade() -> None:
    """Drop the two tables."""
    op.drop_index(op.f("ix_ops_heartbeats_role_beat"), table_name="ops_heartbeats")
    op.drop_table("ops_heartbeats")
    op.drop_table("ops_counters")
