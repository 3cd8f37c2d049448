"""Identities: bearer tokens per actor, and the token that accepted each command (issue 15).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-10

- ``auth_tokens``: one row per token; only the SHA-256 of the token is stored (the token is
  printed once at creation), with the identity it proves (actor type and name, an optional run
  it is limited to), who created it, when it expires and when it was revoked.
- ``forum_commands.token_id``: the token a command was accepted with (NULL for a local identity
  and for every command accepted before this revision).
- ``ix_run_agents_agent_name``: the runs of an agent, read when an agent's command is accepted
  (it writes only on the tickets of its runs).

Frozen: the SQL is written out here, not imported.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``auth_tokens`` and add ``forum_commands.token_id``."""
    op.create_table(
        "auth_tokens",
        sa.Column("token_id", sa.String(128), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("actor_type", sa.String(32), nullable=False),
        sa.Column("actor_name", sa.String(512), nullable=False),
        sa.Column("run_id", sa.String(512), nullable=True),
        sa.Column("created_by", sa.String(600), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(600), nullable=True),
        sa.PrimaryKeyConstraint("token_id", name=op.f("pk_auth_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_auth_tokens_token_hash")),
    )
    op.add_column("forum_commands", sa.Column("token_id", sa.String(128), nullable=True))
    op.create_index(op.f("ix_run_agents_agent_name"), "run_agents", ["agent_name"])


def downgrade() -> None:
    """Drop the index, ``forum_commands.token_id`` and ``auth_tokens``."""
    op.drop_index(op.f("ix_run_agents_agent_name"), table_name="run_agents")
    with op.batch_alter_table("forum_commands") as batch:
        batch.drop_column("token_id")
    op.drop_table("auth_tokens")
