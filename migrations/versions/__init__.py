"""Alembic revisions, one file each, named ``NNNN_slug.py`` with revision id ``NNNN``.

A new revision also sets ``HEAD`` in ``metawsm/storage/schema_head.py`` (the check every command
makes without Alembic); ``tests/unit/test_schema_head.py`` fails until it does.
"""
