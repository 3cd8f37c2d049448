"""Run creations by idempotency key: ``POST /runs`` with ``Idempotency-Key`` creates one run.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07

- ``run_creations``: one row per run created with an idempotency key: the key, the run it
  created, the request as it was made (tickets, agents, mode, brief) and who made it. The same
  key again with the same request and caller answers that run instead of creating another; with
  another request or caller it is refused.

Frozen: the SQL is written out here, not imported.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``run_creations``."""
    op.create_table(
        "run_creations",
        sa.Column("idempotency_key", sa.String(128), nullable=False),
        sa.Column("run_id", sa.String(512), nullable=False),
        sa.Column("request", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(600), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("idempotency_key", name=op.f("pk_run_creations")),
    )


def downgrade() -> None:
    """Drop ``run_creations``."""
    op.drop_table("run_creations")
