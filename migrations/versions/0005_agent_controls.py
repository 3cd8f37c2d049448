"""The control state read model: one row per (run, agent), advanced by every control signal.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-06

``run_agent_controls`` holds what each agent's control signals leave (pending guidance request,
newest completion and validation with their epochs, last signal): the snapshot, the gates, the
SLA pass and the lifecycle consumer read one row per agent instead of folding every signal
(docs/performance.md, "Snapshot at scale"). One row per control thread, filled here by folding
each thread's signals in thread order, so a database written before works without a rebuild.

Frozen: the fold is written out here (the rules of metawsm.domain.control.advance as of this
revision), not imported.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.String(length=128)
NAME = sa.String(length=512)
TS = sa.DateTime(timezone=True)
TABLE = "run_agent_controls"
SIGNALS = sa.text(
    "SELECT c.run_id, c.agent_name, c.thread_id, e.event_id, e.thread_seq, e.occurred_at,"
    " e.payload FROM forum_control_threads c LEFT JOIN forum_events e"
    " ON e.thread_id = c.thread_id AND e.event_type = 'forum.control.signal'"
    " ORDER BY c.run_id, c.agent_name, e.thread_seq"
)


def upgrade() -> None:
    table = op.create_table(
        TABLE,
        sa.Column("run_id", NAME, nullable=False),
        sa.Column("agent_name", NAME, nullable=False),
        sa.Column("thread_id", ID, nullable=True),
        sa.Column("pending", sa.Boolean(), nullable=False),
        sa.Column("question", sa.Text(), nullable=True),
        sa.Column("context", sa.Text(), nullable=True),
        sa.Column("asked_at", TS, nullable=True),
        sa.Column("request_event_id", ID, nullable=True),
        sa.Column("request_seq", sa.Integer(), nullable=False),
        sa.Column("completion_epoch", sa.Integer(), nullable=True),
        sa.Column("summary", sa.Text(), nullable=True),
        sa.Column("validation_epoch", sa.Integer(), nullable=True),
        sa.Column("validation_status", sa.Text(), nullable=True),
        sa.Column("validation_done_criteria", sa.Text(), nullable=True),
        sa.Column("last_signal_at", TS, nullable=True),
        sa.Column("last_event_id", ID, nullable=True),
        sa.Column("last_thread_seq", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "agent_name", name=op.f("pk_run_agent_controls")),
    )
    rows = _fold(op.get_bind().execute(SIGNALS))
    if rows:
        op.bulk_insert(table, rows)


def _fold(signals: Any) -> list[dict[str, Any]]:
    """One row per control thread: its signals folded in thread order."""
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for run_id, agent, thread_id, event_id, seq, at, payload in signals:
        row = out.get((run_id, agent))
        if row is None:
            row = out[(run_id, agent)] = _empty(run_id, agent, thread_id)
        if event_id is None:
            continue  # a control thread without signals
        data = json.loads(payload) if isinstance(payload, str | bytes) else payload
        at = datetime.fromisoformat(at) if isinstance(at, str) else at  # SQLite: naive UTC text
        signal = data.get("signal", {}) or {}
        kind, epoch = str(signal.get("control_type", "")), int(data.get("epoch", 1))
        row.update(last_signal_at=at, last_event_id=event_id, last_thread_seq=seq)
        if kind == "guidance_request":
            row.update(pending=True, question=signal.get("question"),
                       context=signal.get("context"), asked_at=at, request_event_id=event_id,
                       request_seq=seq)  # fmt: skip
        elif kind == "guidance_answer":
            row.update(pending=False, question=None, context=None, asked_at=None,
                       request_event_id=None)  # fmt: skip
        elif kind == "completion" and _not_older(epoch, row["completion_epoch"]):
            row.update(completion_epoch=epoch, summary=signal.get("summary"))
        elif kind == "validation" and _not_older(epoch, row["validation_epoch"]):
            status, criteria = signal.get("status") or "", signal.get("done_criteria") or ""
            row.update(validation_epoch=epoch, validation_status=status.strip().lower(),
                       validation_done_criteria=criteria.strip())  # fmt: skip
    return list(out.values())


def _empty(run_id: str, agent: str, thread_id: str) -> dict[str, Any]:
    return {"run_id": run_id, "agent_name": agent, "thread_id": thread_id, "pending": False,
            "question": None, "context": None, "asked_at": None, "request_event_id": None,
            "request_seq": 0, "completion_epoch": None, "summary": None,
            "validation_epoch": None, "validation_status": None,
            "validation_done_criteria": None, "last_signal_at": None, "last_event_id": None,
            "last_thread_seq": 0}  # fmt: skip


def _not_older(epoch: int, held: int | None) -> bool:
    return held is None or epoch >= held


def downgrade() -> None:
    op.drop_table(TABLE)
