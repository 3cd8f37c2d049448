"""A covering index of the threads of runs, for the snapshot's open threads (issue 12).

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06

``ix_forum_thread_views_run_open``: every column the snapshot reads of a run's threads (its open
threads, their SLA candidates), in the order it reads them (run, then last event). The snapshot
of every active run read each of their views from the table, one page read per view spread over
the whole table (6,963 views of runs among 102,002 on the 100k store: ~12-16 ms of a 1,000-run
snapshot); from this index it reads them in order, without the table (~4 ms). Partial: only the
views of a thread of a run are in it, so the threads of no run (most of them) cost no write.

Frozen: the SQL is written out here, not imported.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

NAME = "ix_forum_thread_views_run_open"
COLUMNS = [
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
]
OF_A_RUN = "run_id IS NOT NULL"


def upgrade() -> None:
    """Create the partial covering index."""
    op.create_index(
        NAME,
        "forum_thread_views",
        COLUMNS,
        sqlite_where=sa.text(OF_A_RUN),
        postgresql_where=sa.text(OF_A_RUN),
    )


def downgrade() -> None:
    """Drop it."""
    op.drop_index(NAME, table_name="forum_thread_views")
