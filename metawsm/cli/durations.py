"""Durations on the command line: one type for every option that takes a length of time.

``30``, ``30s``, ``0.5m``, ``5m`` and ``1h`` mean the same wherever a duration is asked for
(``--timeout`` of writes and signals, ``--refresh`` of watch, ``--interval`` of operator,
``--duration`` of drill); the value reaches the command as float seconds.
``tests/unit/test_cli_grammar.py`` walks every command and fails on a duration option of
another type.
"""

from __future__ import annotations

import re
from typing import Any

import click

# Compiled on first use (re keeps it), not at import: most commands parse no duration.
_DURATION = r"^\s*(\d+(?:\.\d*)?|\.\d+)\s*([smh]?)\s*$"
_UNIT_S = {"s": 1.0, "m": 60.0, "h": 3600.0}
FORMS = "seconds (30, 30s, 0.5) or minutes or hours (5m, 1h)"


def parse_duration(text: str) -> float:
    """Seconds in ``30``, ``30s``, ``5m``, ``1h`` (a fraction is fine: ``0.5m``).

    Raises:
        ValueError: the text is not such a duration (the message says which forms are).
    """
    match = re.match(_DURATION, text, re.IGNORECASE)
    if not match:
        raise ValueError(f"{text!r} is not a duration: give {FORMS}")
    return float(match.group(1)) * _UNIT_S[(match.group(2) or "s").lower()]


def show_duration(seconds: float) -> str:
    """``seconds`` as the shortest form :func:`parse_duration` reads back (90 -> ``90s``)."""
    for unit in ("h", "m"):
        if seconds >= _UNIT_S[unit] and seconds % _UNIT_S[unit] == 0:
            return f"{seconds / _UNIT_S[unit]:g}{unit}"
    return f"{seconds:g}s"


class Duration(click.ParamType[float]):
    """A length of time as float seconds, within ``[min_s, max_s]`` (``min_s`` excluded when
    ``open_min``: a timeout of 0 s waits for nothing)."""

    name = "duration"

    def __init__(self, min_s: float = 0.0, max_s: float | None = None, open_min: bool = True):
        self.min_s, self.max_s, self.open_min = min_s, max_s, open_min

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        """How the help shows the value."""
        return "DURATION"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """Seconds from text or a number; a usage error (exit 2) naming the forms or the bound."""
        if isinstance(value, int | float) and not isinstance(value, bool):
            seconds = float(value)
        else:
            try:
                seconds = parse_duration(str(value))
            except ValueError as exc:
                self.fail(str(exc), param, ctx)
        too_small = seconds <= self.min_s if self.open_min else seconds < self.min_s
        if too_small:
            rule = "more than" if self.open_min else "at least"
            bound = show_duration(self.min_s)
            self.fail(f"{value!r} is too short: must be {rule} {bound}", param, ctx)
        if self.max_s is not None and seconds > self.max_s:
            bound = show_duration(self.max_s)
            self.fail(f"{value!r} is too long: must be at most {bound}", param, ctx)
        return seconds
