"""Indexed lists, queues and full-text search: derived view columns, their indexes, the index.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05

- ``forum_thread_views.urgency`` (4 urgent .. 1 low, 0 other) and ``is_unanswered`` (the
  unanswered rule of metawsm.domain.views), derived by the fold and backfilled here from the
  columns they are derived from, so a database written before works without a rebuild.
- ``ix_forum_thread_views_list`` (urgency, last_event_sequence), ``..._ticket_list`` (ticket, ..)
  and ``..._unanswered`` (is_unanswered, ..): ``forum list`` and the queues read an index
  backwards instead of sorting every view.
- ``forum_search``, the full-text index (metawsm.services.search_index): an FTS5 virtual table on
  SQLite, a table with a generated tsvector and a GIN index on PostgreSQL; backfilled from the
  posts every view covers. It is no model (its shape differs per dialect), so it is spelled out
  here per dialect and left out of the drift check.

Frozen: the SQL is written out here, not imported.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VIEWS = "forum_thread_views"
BACKFILL_VIEWS = """
UPDATE forum_thread_views SET
  urgency = CASE priority
    WHEN 'urgent' THEN 4 WHEN 'high' THEN 3 WHEN 'normal' THEN 2 WHEN 'low' THEN 1 ELSE 0 END,
  is_unanswered = (
    state IN ('new', 'waiting_human', 'waiting_operator')
    AND last_agent_sequence > last_human_or_operator_sequence
    AND COALESCE(last_non_system_actor_type, '') = 'agent'
  )
"""
CREATE_SEARCH = {
    "sqlite": [
        "CREATE VIRTUAL TABLE forum_search USING fts5("
        "title, body, thread_id UNINDEXED, tokenize = 'unicode61 remove_diacritics 0')"
    ],
    "postgresql": [
        "CREATE TABLE forum_search ("
        " sequence BIGINT NOT NULL CONSTRAINT pk_forum_search PRIMARY KEY,"
        " thread_id VARCHAR(128) NOT NULL, title TEXT NOT NULL, body TEXT NOT NULL,"
        # Punctuation becomes a space before parsing, so words split as FTS5's unicode61 does
        # (the default parser reads "t-3" as 't' and '-3', "a.b" as one host name).
        " document tsvector GENERATED ALWAYS AS ("
        "setweight(to_tsvector('simple', regexp_replace(title, '[[:punct:]]+', ' ', 'g')), 'A')"
        " || setweight(to_tsvector('simple', regexp_replace(body, '[[:punct:]]+', ' ', 'g')),"
        " 'D')) STORED)",
        "CREATE INDEX ix_forum_search_document ON forum_search USING GIN (document)",
    ],
}
BACKFILL_SEARCH = """
SELECT e.sequence, e.thread_id,
       CASE WHEN p.kind = 'opening' THEN v.title ELSE '' END, p.body
FROM forum_events e JOIN forum_posts p ON p.event_id = e.event_id
JOIN forum_thread_views v ON v.thread_id = e.thread_id AND e.thread_seq <= v.last_thread_seq
"""
INSERT_SEARCH = {
    "sqlite": "INSERT INTO forum_search (rowid, thread_id, title, body) ",
    "postgresql": "INSERT INTO forum_search (sequence, thread_id, title, body) ",
}


def upgrade() -> None:
    """Add and backfill the derived columns and their indexes; create and fill the index."""
    with op.batch_alter_table(VIEWS) as batch:
        batch.add_column(sa.Column("urgency", sa.Integer(), nullable=False, server_default="0"))
        batch.add_column(
            sa.Column("is_unanswered", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.execute(BACKFILL_VIEWS)
    op.create_index(op.f("ix_forum_thread_views_list"), VIEWS, ["urgency", "last_event_sequence"])
    op.create_index(
        op.f("ix_forum_thread_views_ticket_list"),
        VIEWS,
        ["ticket", "urgency", "last_event_sequence"],
    )
    op.create_index(
        op.f("ix_forum_thread_views_unanswered"),
        VIEWS,
        ["is_unanswered", "urgency", "last_event_sequence"],
    )
    dialect = op.get_bind().dialect.name
    for statement in CREATE_SEARCH[dialect]:
        op.execute(statement)
    op.execute(INSERT_SEARCH[dialect] + BACKFILL_SEARCH)


def downgrade() -> None:
    """Drop the index, the view indexes and the derived columns."""
    op.execute("DROP TABLE forum_search")
    op.drop_index(op.f("ix_forum_thread_views_unanswered"), table_name=VIEWS)
    op.drop_index(op.f("ix_forum_thread_views_ticket_list"), table_name=VIEWS)
    op.drop_index(op.f("ix_forum_thread_views_list"), table_name=VIEWS)
    with op.batch_alter_table(VIEWS) as batch:
        batch.drop_column("is_unanswered")
        batch.drop_column("urgency")
