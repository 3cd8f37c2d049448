"""How a setting's value is parsed and checked: one :class:`Spec` per field of the settings.

Values come as text (environment, ``.env``) or as Python values (overrides, tests). Parsing
follows pydantic's lax mode, which the settings used before, and so do the messages: ``" 5 "``,
``"5.0"`` and ``"1_000"`` are integers, ``yes``/``off``/``1`` booleans, and a broken rule says
``Input should be greater than 0``. Kept here so :mod:`metawsm.settings` imports no library.
"""

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

TRUE = frozenset({"1", "on", "t", "true", "y", "yes"})
FALSE = frozenset({"0", "off", "f", "false", "n", "no"})
# An integer written with a zero fraction ("5.0"), which pydantic accepts as 5.
_WHOLE = re.compile(r"\s*([+-]?\d[\d_]*)\.0*\s*")


class Invalid(ValueError):
    """A value that cannot be parsed as its field's type, or breaks its rule (the message)."""


class Rule(NamedTuple):
    """Bounds of a number (``gt``, ``ge``, ``le``), a minimum text length, or a check that
    returns what is wrong with the value (None when it is right)."""

    gt: float | None = None
    ge: float | None = None
    le: float | None = None
    min_length: int | None = None
    check: Callable[[Any], str | None] | None = None

    def broken_by(self, value: Any) -> str | None:
        """The message of the first bound ``value`` breaks, or None."""
        if self.gt is not None and not value > self.gt:
            return f"Input should be greater than {self.gt:g}"
        if self.ge is not None and not value >= self.ge:
            return f"Input should be greater than or equal to {self.ge:g}"
        if self.le is not None and not value <= self.le:
            return f"Input should be less than or equal to {self.le:g}"
        if self.min_length is not None and len(value) < self.min_length:
            plural = "" if self.min_length == 1 else "s"
            return f"String should have at least {self.min_length} character{plural}"
        if self.check is not None:
            problem = self.check(value)
            return None if problem is None else f"Value error, {problem}"
        return None


class Spec(NamedTuple):
    """A field's type (str, int, float or bool), its rule, and whether None is allowed."""

    kind: type
    rule: Rule
    optional: bool = False

    def parse(self, value: Any) -> Any:
        """``value`` as this field's type, checked by its rule.

        Raises:
            Invalid: with pydantic's message for the parse error or the broken bound.
        """
        if value is None and self.optional:
            return None
        parsed = PARSERS[self.kind](value)
        problem = self.rule.broken_by(parsed)
        if problem:
            raise Invalid(problem)
        return parsed


def parse_str(value: Any) -> str:
    """Text as it is (no stripping: pydantic did not strip)."""
    if not isinstance(value, str):
        raise Invalid("Input should be a valid string")
    return value


def parse_int(value: Any) -> int:
    """An integer from an int, a whole float, or text (``" 5 "``, ``"1_000"``, ``"5.0"``)."""
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value) or value != int(value):
            raise Invalid("Input should be a valid integer, got a number with a fractional part")
        return int(value)
    if not isinstance(value, str):
        raise Invalid("Input should be a valid integer")
    whole = _WHOLE.fullmatch(value)
    try:
        return int(whole.group(1) if whole else value)
    except ValueError:
        raise Invalid(
            "Input should be a valid integer, unable to parse string as an integer"
        ) from None


def parse_float(value: Any) -> float:
    """A number from an int, a float or text (``"1e-1"``, ``" 0.7 "``, ``"inf"``)."""
    if isinstance(value, int | float):
        return float(value)
    if not isinstance(value, str):
        raise Invalid("Input should be a valid number")
    try:
        return float(value)
    except ValueError:
        message = "Input should be a valid number, unable to parse string as a number"
        raise Invalid(message) from None


def parse_bool(value: Any) -> bool:
    """A boolean from a bool, 0/1, or text (``true/false``, ``yes/no``, ``on/off``, ``1/0``...)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in TRUE | FALSE:
        return value.lower() in TRUE
    raise Invalid("Input should be a valid boolean, unable to interpret input")


PARSERS: dict[type, Callable[[Any], Any]] = {
    str: parse_str,
    int: parse_int,
    float: parse_float,
    bool: parse_bool,
}


def check_fields(
    specs: Mapping[str, Spec], values: Mapping[str, Any]
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Parse every value by its field's spec: (parsed values, [(field, message)] in field order)."""
    parsed: dict[str, Any] = {}
    errors: list[tuple[str, str]] = []
    for name, spec in specs.items():
        try:
            parsed[name] = spec.parse(values[name])
        except Invalid as exc:
            errors.append((name, str(exc)))
    return parsed, errors
