"""What a write waits for: the --wait/--no-wait rules of every write command."""

from __future__ import annotations

import pytest

from metawsm.cli import options
from metawsm.errors import UsageError


@pytest.mark.parametrize(
    ("kw", "tty", "expected"),
    [
        ({}, True, "projected"),
        ({}, False, "applied"),
        ({"wait_for": "applied"}, True, "applied"),
        ({"wait_for": "projected"}, False, "projected"),
        ({"no_wait": True}, True, None),
    ],
    ids=["terminal", "pipe", "applied", "projected", "no-wait"],
)
def test_a_write_waits_for_what_was_asked_or_by_default_for_what_a_person_reads_next(
    monkeypatch: pytest.MonkeyPatch, kw: dict[str, object], tty: bool, expected: str | None
) -> None:
    monkeypatch.setattr(options.sys.stdout, "isatty", lambda: tty)
    assert options.wait_mode(kw) == expected


def test_wait_with_no_wait_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="cannot be combined"):
        options.wait_mode({"no_wait": True, "wait_for": "projected"})
