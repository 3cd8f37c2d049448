"""metawsm/records.py: a frozen record behaves as ``@dataclass(frozen=True, kw_only=True)``."""

from __future__ import annotations

import dataclasses
from dataclasses import FrozenInstanceError, field

import pytest

from metawsm.records import field_names, frozen_record, replace

made: list[str] = []


def _made() -> str:
    made.append("x")
    return f"made-{len(made)}"


@frozen_record
class Sample:
    """A record with every kind of field the settings use."""

    name: str
    count: int = 3
    made_by: str = field(default_factory=_made)
    secret: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError("count must be >= 0")
        object.__setattr__(self, "name", self.name.strip())


@dataclasses.dataclass(frozen=True, kw_only=True)
class SameAsDataclass:
    """What :class:`Sample` stands for."""

    name: str
    count: int = 3
    made_by: str = field(default_factory=_made)
    secret: str | None = field(default=None, repr=False)


def test_fields_defaults_factories_and_post_init() -> None:
    made.clear()
    s = Sample(name=" a ")
    assert (s.name, s.count, s.made_by, s.secret) == ("a", 3, "made-1", None)
    assert Sample(name="b", made_by="given").made_by == "given"
    assert made == ["x"]  # the factory runs only when the field is not given
    assert field_names(Sample) == field_names(s) == ("name", "count", "made_by", "secret")
    with pytest.raises(ValueError, match="count must be >= 0"):
        Sample(name="a", count=-1)


def test_frozen_like_a_frozen_dataclass() -> None:
    s = Sample(name="a")
    for record in (s, SameAsDataclass(name="a")):
        with pytest.raises(FrozenInstanceError):
            record.count = 4  # type: ignore[misc]
        with pytest.raises(FrozenInstanceError):
            del record.count  # type: ignore[misc]


def test_arguments_are_checked_like_a_dataclass_s() -> None:
    with pytest.raises(TypeError, match="unexpected keyword argument 'nope'"):
        Sample(name="a", nope=1)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="missing 1 required keyword-only argument: 'name'"):
        Sample()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Sample("a")  # type: ignore[misc]


def test_repr_eq_and_hash_as_a_dataclass_s() -> None:
    made.clear()
    ours = Sample(name="a", made_by="m", secret="hunter2")
    theirs = SameAsDataclass(name="a", made_by="m", secret="hunter2")
    assert repr(ours) == repr(theirs).replace("SameAsDataclass", "Sample")
    assert "hunter2" not in repr(ours)
    assert ours == Sample(name="a", made_by="m", secret="hunter2")
    assert ours != Sample(name="a", made_by="m", secret="other")
    assert ours != theirs
    assert hash(ours) == hash(Sample(name="a", made_by="m", secret="hunter2"))


def test_replace_makes_a_new_checked_record() -> None:
    s = Sample(name="a", made_by="m")
    t = replace(s, count=5)
    assert (t.name, t.count, t.made_by, s.count) == ("a", 5, "m", 3)
    with pytest.raises(ValueError, match="count must be >= 0"):
        replace(s, count=-1)
    with pytest.raises(TypeError, match="unexpected keyword argument 'bogus'"):
        replace(s, bogus=1)
