"""The fast timestamp conversions of a rebuild give exactly what the column type gives."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.dialects import sqlite

from metawsm.storage.types import UTCDateTime, as_utc, sqlite_utc_text

AWARE = [
    datetime(2026, 9, 1, 12, 3, 4, 123456, tzinfo=UTC),
    datetime(2026, 9, 1, 12, 3, 4, tzinfo=UTC),  # no microseconds: still written as .000000
    datetime(2026, 1, 1, 1, 0, tzinfo=timezone(timedelta(hours=5))),  # the day before in UTC
    datetime(999, 1, 1, tzinfo=UTC),  # a year below 1000: padded to four digits
]


@pytest.mark.parametrize("value", [*AWARE, None])
def test_sqlite_text_is_what_the_column_type_binds(value: datetime | None) -> None:
    bind = UTCDateTime()._cached_bind_processor(sqlite.dialect())
    assert bind is not None
    assert sqlite_utc_text(value) == bind(value)


def test_sqlite_text_refuses_a_naive_timestamp() -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        sqlite_utc_text(datetime(2026, 9, 1))


@pytest.mark.parametrize("value", AWARE)
def test_stored_text_reads_back_as_the_same_aware_utc_instant(value: datetime) -> None:
    text = sqlite_utc_text(value)
    assert text is not None
    read = as_utc(text)
    assert read == value and read.utcoffset() == timedelta(0) and read.tzinfo is UTC


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("2026-09-01 12:03:04", datetime(2026, 9, 1, 12, 3, 4, tzinfo=UTC)),
        ("2026-09-01T12:03:04+02:00", datetime(2026, 9, 1, 10, 3, 4, tzinfo=UTC)),
        ("2026-09-01", datetime(2026, 9, 1, tzinfo=UTC)),
        ("2026-09-01 12:03:04-05", datetime(2026, 9, 1, 17, 3, 4, tzinfo=UTC)),
        ("2026-09-01T12:03:04Z", datetime(2026, 9, 1, 12, 3, 4, tzinfo=UTC)),
    ],
)
def test_as_utc_reads_text_with_and_without_an_offset(text: str, want: datetime) -> None:
    assert as_utc(text) == want and as_utc(text).tzinfo is UTC
