"""Alembic migrations of the metawsm schema (revisions in ``versions/``).

Installed as a package so that ``metawsm db upgrade`` finds them without an ``alembic.ini``;
``metawsm.storage.migrate`` builds the Alembic configuration in code.
"""
