"""Each run's snapshot parts that do not depend on the clock, kept between reads (issue 12).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07

``runs.facts_version`` counts the changes to what a run's snapshot shows from seven tables (its
agents, their control state, its brief, its threads' views, its escalations, its dead letters,
and its events but the operator's own decisions, which a snapshot does not count as activity).
Triggers keep it, on SQLite and PostgreSQL, for every writer (the handlers, the projector, the
SLA pass, the dead-letter path, a rebuild, a command line writing through the driver): no code
path can change those rows and leave the count behind. ``run_snapshot_docs`` holds, per run, the
parts a snapshot made from those tables (services/snapshot_docs.py) and the ``facts_version`` it
read them at; a snapshot uses a document only while the run's count is still that version, and
remakes the others. The documents are a cache: dropping them loses nothing.

Frozen: the columns and statements are written out here, not imported.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

SOURCES = (
    "run_agents",
    "run_agent_controls",
    "run_briefs",
    "forum_thread_views",
    "forum_escalations",
    "forum_dead_letters",
    "forum_events",
)
# An event of a run counts unless it is an operator's decision (services/snapshot_reads.py
# OPERATOR_DECISION): the operator notes one per run when its decision changes, and that must
# not make every run's document again.
COUNTED = {"forum_events": "{row}.event_type != 'operator.decision'"}
BUMP = "UPDATE runs SET facts_version = facts_version + 1 WHERE run_id = {row}.run_id;"

# SQLite: a trigger per table and operation (no trigger function); an update bumps the run it
# leaves and the run it joins (the same run: once).
SQLITE_TRIGGERS = {
    "insert": "AFTER INSERT ON {table} WHEN NEW.run_id IS NOT NULL{also} BEGIN "
    + BUMP.format(row="NEW") + " END",
    "update": "AFTER UPDATE ON {table} BEGIN " + BUMP.format(row="NEW")
    + " UPDATE runs SET facts_version = facts_version + 1 WHERE run_id = OLD.run_id"
    " AND OLD.run_id IS NOT NEW.run_id; END",
    "delete": "AFTER DELETE ON {table} WHEN OLD.run_id IS NOT NULL BEGIN " + BUMP.format(row="OLD")
    + " END",
}  # fmt: skip

POSTGRES_FUNCTION = """
CREATE FUNCTION metawsm_run_facts_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'DELETE' AND NEW.run_id IS NOT NULL THEN
        UPDATE runs SET facts_version = facts_version + 1 WHERE run_id = NEW.run_id;
    END IF;
    IF TG_OP <> 'INSERT' AND OLD.run_id IS NOT NULL
            AND (TG_OP = 'DELETE' OR OLD.run_id IS DISTINCT FROM NEW.run_id) THEN
        UPDATE runs SET facts_version = facts_version + 1 WHERE run_id = OLD.run_id;
    END IF;
    RETURN NULL;
END
$$
"""


def _trigger(table: str, operation: str) -> str:
    return f"trg_{table}_facts_{operation}"


def upgrade() -> None:
    """The count on ``runs``, its triggers, and the documents' table (empty: filled by reads)."""
    op.add_column(
        "runs", sa.Column("facts_version", sa.Integer(), nullable=False, server_default="0")
    )
    op.create_table(
        "run_snapshot_docs",
        sa.Column("run_id", sa.String(512), nullable=False),
        sa.Column("facts_version", sa.Integer(), nullable=False),
        sa.Column("doc", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_run_snapshot_docs")),
    )
    if op.get_bind().dialect.name == "postgresql":
        op.execute(POSTGRES_FUNCTION)
        for table in SOURCES:
            for operation, events, when in _postgres_triggers(table):
                op.execute(
                    f"CREATE TRIGGER {_trigger(table, operation)} AFTER {events} ON {table}"
                    f" FOR EACH ROW{when} EXECUTE FUNCTION metawsm_run_facts_changed()"
                )
        return
    for table in SOURCES:
        also = f" AND {COUNTED[table].format(row='NEW')}" if table in COUNTED else ""
        for operation, body in SQLITE_TRIGGERS.items():
            sql = body.format(table=table, also=also)
            op.execute(f"CREATE TRIGGER {_trigger(table, operation)} {sql}")


def _postgres_triggers(table: str) -> list[tuple[str, str, str]]:
    """(name suffix, events, condition) of each trigger on ``table``."""
    if table not in COUNTED:
        return [("change", "INSERT OR UPDATE OR DELETE", "")]
    counted = COUNTED[table].format(row="NEW")
    return [("insert", "INSERT", f" WHEN ({counted})"), ("change", "UPDATE OR DELETE", "")]


def downgrade() -> None:
    """Drop the triggers, the documents and the count."""
    postgres = op.get_bind().dialect.name == "postgresql"
    for table in SOURCES:
        operations = [t[0] for t in _postgres_triggers(table)] if postgres else SQLITE_TRIGGERS
        for operation in operations:
            on = f" ON {table}" if postgres else ""
            op.execute(f"DROP TRIGGER IF EXISTS {_trigger(table, operation)}{on}")
    if postgres:
        op.execute("DROP FUNCTION IF EXISTS metawsm_run_facts_changed()")
    op.drop_table("run_snapshot_docs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("facts_version")
