"""Indexes for the constant-cost snapshot, the SLA pass and the operator (issue 12).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05

Every statement of ``services/run_reads.py``, ``escalation.thread_candidates`` and
``operator.last_fingerprints`` goes through an index (plans in docs/performance.md, "Snapshot at
scale"):

- ``ix_forum_escalations_run_id``: a run's raised escalations.
- ``ix_forum_dead_letters_run_status``: a run's dead letters still dead.
- ``ix_forum_events_run_type_sequence``: a run's newest operator decision.
- ``ix_forum_thread_views_run_control_state``: a run's threads counted by state from the index
  alone, and its open ones.
- ``ix_forum_thread_views_escalating``: the SLA candidates (threads waiting in new or
  waiting_human, oldest first).
- ``ix_runs_status_created``: the active runs without reading the finished ones.
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INDEXES = (
    ("ix_forum_escalations_run_id", "forum_escalations", ["run_id"]),
    ("ix_forum_dead_letters_run_status", "forum_dead_letters", ["run_id", "status"]),
    ("ix_forum_events_run_type_sequence", "forum_events", ["run_id", "event_type", "sequence"]),
    (
        "ix_forum_thread_views_run_control_state",
        "forum_thread_views",
        ["run_id", "is_control", "state"],
    ),
    (
        "ix_forum_thread_views_escalating",
        "forum_thread_views",
        ["state", "is_control", "updated_at"],
    ),
    ("ix_runs_status_created", "runs", ["status", "created_at"]),
)


def upgrade() -> None:
    for name, table, columns in INDEXES:
        op.create_index(op.f(name), table, columns)


def downgrade() -> None:
    for name, table, _ in reversed(INDEXES):
        op.drop_index(op.f(name), table_name=table)
