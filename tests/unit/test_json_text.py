"""The fast JSON writer of the command line writes exactly what ``json.dumps(indent=2,
sort_keys=True, default=str)`` writes, for random documents and for every odd case; its compact
form writes the same data, keys sorted."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import Any

import pytest

from metawsm.cli.json_text import compact, dumps


class Colour(StrEnum):
    """A str subclass."""

    RED = "red"


class Level(IntEnum):
    """An int subclass."""

    HIGH = 3


def reference(data: Any) -> str:
    """What the command line printed before (cli/context.py emit_json)."""
    return json.dumps(data, indent=2, sort_keys=True, default=str)


SCALARS: list[Any] = ["", "plain", "quote \" and \\ and\nnewline", "ünïcödé ✓", 0, -7, 2**70,
                      1.5, 1e-7, float("inf"), True, False, None]  # fmt: skip
ODD: list[Any] = [Colour.RED, Level.HIGH, datetime(2026, 1, 2, tzinfo=UTC), (1, "a"), {1: "x"}]


def _random(rng: random.Random, depth: int) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.35:
        return rng.choice(SCALARS + (ODD if rng.random() < 0.05 else []))
    if roll < 0.65:
        return [_random(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    keys = ["a", "b", "zeta", "Éclair", "", "10", "9"]
    return {rng.choice(keys): _random(rng, depth + 1) for _ in range(rng.randint(0, 5))}


@pytest.mark.parametrize("seed", range(200))
def test_random_documents_are_written_as_json_dumps_writes_them(seed: int) -> None:
    data = _random(random.Random(seed), 0)
    assert dumps(data) == reference(data)


@pytest.mark.parametrize(
    "data",
    [
        {},
        [],
        {"runs": []},
        {"a": {}, "b": [], "c": [{}], "d": [[]]},
        {"b": 1, "a": {"y": [1, 2], "x": "s"}},
        [{"k": "v", "n": None}, {"k": 1.25}],
        {1: "int key", 2: "sorted as numbers"},
        {"when": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)},
        {"colour": Colour.RED, "level": Level.HIGH, "pair": (1, 2)},
        {"nested": {"deep": {"deeper": {"deepest": [1, {"x": [True, False]}]}}}},
        "just a string",
        42,
    ],
)
def test_odd_documents_are_written_as_json_dumps_writes_them(data: Any) -> None:
    assert dumps(data) == reference(data)


def compact_reference(data: Any) -> str:
    """What ``status --json`` printed into a pipe before orjson wrote it."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


@pytest.mark.parametrize("seed", range(200))
def test_a_compact_document_holds_the_same_data_keys_sorted(seed: int) -> None:
    data = _random(random.Random(seed), 0)
    text = compact(data)
    assert "\n" not in text
    # Infinity is written as null (JSON has no such number); json.dumps wrote it as Infinity
    assert json.loads(text, parse_constant=_null) == json.loads(
        compact_reference(data), parse_constant=_null
    )
    if not _has_int_keys(data):  # numbers as keys are sorted as json.dumps sorts numbers
        json.loads(text, object_pairs_hook=_keys_in_order)


def _null(_constant: str) -> None:
    return None


def _has_int_keys(data: Any) -> bool:
    if isinstance(data, dict):
        return any(not isinstance(k, str) or _has_int_keys(v) for k, v in data.items())
    if isinstance(data, list | tuple):
        return any(_has_int_keys(v) for v in data)
    return False


def _keys_in_order(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    keys = [k for k, _ in pairs]
    assert keys == sorted(keys), keys
    return dict(pairs)


@pytest.mark.parametrize(
    ("data", "text"),
    [
        ({"at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)}, '{"at":"2026-01-02 03:04:05+00:00"}'),
        ({"big": 2**70}, '{"big":1180591620717411303424}'),
        ({"colour": Colour.RED, "level": Level.HIGH, "pair": (1, "a")},
         '{"colour":"red","level":3,"pair":[1,"a"]}'),
        ({"name": "Éclair ✓"}, '{"name":"Éclair ✓"}'),
        ({"x": float("inf"), "y": 1e-7}, '{"x":null,"y":1e-7}'),
    ],
)  # fmt: skip
def test_compact_writes_odd_values_as_json_dumps_default_str_would(data: Any, text: str) -> None:
    assert compact(data) == text
