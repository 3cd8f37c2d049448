"""Column types shared by the models."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import DateTime
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored as UTC and always read back timezone-aware (SQLite drops tzinfo)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; metawsm stores aware UTC timestamps only")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return as_utc(value)


def as_utc(value: str | datetime) -> datetime:
    """A stored timestamp (SQLite: naive text; PostgreSQL: aware) as aware UTC."""
    if isinstance(value, str):
        if len(value) > len("YYYY-MM-DD") and value[-6] not in "+-" and value[-1] != "Z":
            # SQLite's naive UTC text: parsed with its offset appended, a fraction of the cost
            # of ``replace(tzinfo=...)`` (a rebuild converts one per event). Text that only
            # looked naive fails to parse so and is read below. (try/except, not
            # contextlib.suppress: the context manager cost four times the parse.)
            try:
                return datetime.fromisoformat(value + "+00:00")
            except ValueError:
                pass
        value = datetime.fromisoformat(value)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def sqlite_utc_text(value: datetime | None) -> str | None:
    """The text :class:`UTCDateTime` stores on SQLite for ``value`` (naive UTC, microseconds
    always: ``YYYY-MM-DD HH:MM:SS.ffffff``), in one step: bulk writes convert many.

    Raises:
        ValueError: ``value`` is naive.
    """
    if value is None:
        return None
    if value.tzinfo is None:
        raise ValueError("naive datetime given; metawsm stores aware UTC timestamps only")
    return value.astimezone(UTC).isoformat(" ", "microseconds")[: -len("+00:00")]


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)
