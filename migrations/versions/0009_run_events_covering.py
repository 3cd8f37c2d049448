"""The index of a run's events holds their type and time too (issue 12).

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06

``ix_forum_events_run_sequence`` was (run, sequence). The snapshot asks, for each run, for its
newest event that is not an operator decision, and when: it walked that index backwards and read
each event's row from the table to learn its type (the operator's own decisions are often the
newest events of every run), then read the row it stopped at for its time: at least two table
pages per run, spread over the whole log. Widened to (run, sequence, type, time), it answers
from the index alone. Same index count: every other read of a run's events in sequence order
uses it as before (its first two columns are the old index); each event written costs one
index entry as before, a wider one.

Frozen: the columns are written out here, not imported.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "ix_forum_events_run_sequence"
TABLE = "forum_events"
NARROW = ["run_id", "sequence"]
WIDE = ["run_id", "sequence", "event_type", "occurred_at"]


def upgrade() -> None:
    """Replace the index by its covering form (same name)."""
    op.drop_index(NAME, table_name=TABLE)
    op.create_index(NAME, TABLE, WIDE)


def downgrade() -> None:
    """Back to (run, sequence)."""
    op.drop_index(NAME, table_name=TABLE)
    op.create_index(NAME, TABLE, NARROW)
