"""Frozen, keyword-only record classes made without compiling code at import.

``@dataclass(frozen=True)`` writes the source of ``__init__``, ``__repr__``, ``__eq__``,
``__hash__``, ``__setattr__`` and ``__delattr__`` and compiles it when the class is made: for
:class:`metawsm.settings.Settings` (31 fields), ~13 M instructions of every command's start,
a tenth of what the command line's own modules cost to import (docs/performance.md, "Session
14"). :func:`frozen_record` makes the same methods from closures over the field list instead,
and is declared a ``dataclass_transform`` so that mypy checks a record's constructor calls
(names, types, required fields) and refuses assignments as it does for a frozen dataclass.

What it supports is what the settings use: fields in annotation order, each with a plain
default, ``field(default=..., repr=False)``, ``field(default_factory=...)``, or none (required);
keyword arguments only; ``__post_init__``. :func:`field_names` and :func:`replace` stand in
for ``dataclasses.fields`` and ``dataclasses.replace``.
"""

from __future__ import annotations

import inspect  # loaded already by every command (click, orjson): not a cost here
from collections.abc import Callable
from dataclasses import MISSING, Field, FrozenInstanceError, field
from typing import Any, TypeVar, dataclass_transform

R = TypeVar("R")


@dataclass_transform(kw_only_default=True, frozen_default=True, field_specifiers=(field,))
def frozen_record(cls: type[R]) -> type[R]:
    """Make ``cls`` a frozen record of its annotated fields (see the module)."""
    names = tuple(inspect.get_annotations(cls))  # this class's own, in order
    defaults: dict[str, Any] = {}
    factories: dict[str, Callable[[], Any]] = {}
    shown: list[str] = []
    for name in names:
        value = cls.__dict__.get(name, MISSING)
        if isinstance(value, Field):
            if value.default_factory is not MISSING:
                factories[name] = value.default_factory
            elif value.default is not MISSING:
                defaults[name] = value.default
            if value.repr:
                shown.append(name)
            delattr(cls, name)
        else:
            if value is not MISSING:
                defaults[name] = value
            shown.append(name)
    known = frozenset(names)
    post_init = getattr(cls, "__post_init__", None)
    setter = object.__setattr__

    def __init__(self: Any, **values: Any) -> None:
        for name in values:
            if name not in known:
                raise TypeError(
                    f"{cls.__name__}.__init__() got an unexpected keyword argument '{name}'"
                )
        for name in names:
            if name in values:
                value = values[name]
            elif name in defaults:
                value = defaults[name]
            elif name in factories:
                value = factories[name]()
            else:
                raise TypeError(
                    f"{cls.__name__}.__init__() missing 1 required keyword-only argument: '{name}'"
                )
            setter(self, name, value)
        if post_init is not None:
            post_init(self)

    def __setattr__(self: Any, name: str, value: Any) -> None:
        raise FrozenInstanceError(f"cannot assign to field '{name}'")

    def __delattr__(self: Any, name: str) -> None:
        raise FrozenInstanceError(f"cannot delete field '{name}'")

    def __repr__(self: Any) -> str:
        shown_fields = ", ".join(f"{name}={getattr(self, name)!r}" for name in shown)
        return f"{cls.__qualname__}({shown_fields})"

    def _values(self: Any) -> tuple[Any, ...]:
        return tuple(getattr(self, name) for name in names)

    def __eq__(self: Any, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return bool(_values(self) == _values(other))

    def __hash__(self: Any) -> int:
        return hash(_values(self))

    for method in (__init__, __setattr__, __delattr__, __repr__, __eq__, __hash__):
        method.__qualname__ = f"{cls.__qualname__}.{method.__name__}"
        setattr(cls, method.__name__, method)
    cls.__record_fields__ = names  # type: ignore[attr-defined]
    return cls


def field_names(record: object) -> tuple[str, ...]:
    """The fields of a record (or its class), in order."""
    names: tuple[str, ...] = record.__record_fields__  # type: ignore[attr-defined]
    return names


def replace(record: R, **changes: Any) -> R:
    """A new record of ``record``'s class with ``changes`` applied (checked as on creation)."""
    values = {name: getattr(record, name) for name in field_names(record)}
    return type(record)(**{**values, **changes})
