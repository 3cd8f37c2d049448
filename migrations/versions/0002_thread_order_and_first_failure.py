"""Per-thread ordering index on the command ledger; the first failure time of a message.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-05

- ``ix_forum_commands_thread_status_accepted`` (thread_id, status, accepted_at): a handler finds
  the commands of its thread accepted before it and still in flight (per-thread ordering,
  docs/contracts.md) with one index lookup.
- ``forum_outbox.first_failed_at``: when the message's first failed attempt happened, kept
  across retries so its dead letter says when the trouble began.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_index(
        op.f("ix_forum_commands_thread_status_accepted"),
        "forum_commands",
        ["thread_id", "status", "accepted_at"],
    )
    with op.batch_alter_table("forum_outbox") as batch:
        batch.add_column(sa.Column("first_failed_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("forum_outbox") as batch:
        batch.drop_column("first_failed_at")
    op.drop_index(op.f("ix_forum_commands_thread_status_accepted"), table_name="forum_commands")
