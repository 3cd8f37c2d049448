"""Storage: SQLAlchemy models, engines, the unit of work and migrations glue."""
