"""The schema head constant the CLI checks against is the migrations' real head."""

from __future__ import annotations

from alembic.script import ScriptDirectory

from metawsm.storage import migrate, schema_head


def test_the_head_constant_is_the_head_of_the_migration_scripts() -> None:
    scripts = ScriptDirectory.from_config(migrate.alembic_config())
    heads = scripts.get_heads()
    assert heads == [schema_head.HEAD], (
        f"migrations/versions has head(s) {heads} but metawsm/storage/schema_head.py says"
        f" HEAD = {schema_head.HEAD!r}: set HEAD to the new revision"
    )
