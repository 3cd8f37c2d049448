"""JSON text exactly as ``json.dumps(data, indent=2, sort_keys=True, default=str)`` writes it,
several times faster for large documents.

The standard library encodes indented JSON in pure Python (its C encoder does not indent): ~100
ms for a 1,000-run snapshot (4 MB), more than building the snapshot. Here every container whose
items are all plain scalars (most of a document: an agent, a thread, a blocker) is written by
the C encoder in one call, its item separator carrying the newline and the indentation of its
depth; only the containers above them are walked in Python. Anything unusual (keys that are not
strings, values that are not JSON types) is left to ``json.dumps`` whole, so the text is always
what it would have written (``tests/unit/test_json_text.py`` compares them).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import lru_cache
from json.encoder import c_make_encoder, encode_basestring_ascii  # type: ignore[attr-defined]
from typing import Any

_PLAIN = frozenset({str, int, float, bool, type(None)})
_KEYS = frozenset({str})
_INDENT = "  "


class _Unusual(Exception):
    """A part this writer leaves to ``json.dumps``."""


def compact(data: Any) -> str:
    """``data`` as one line of JSON, keys sorted, no spaces: the same document as :func:`dumps`
    (``json.loads`` of either gives the same data) for a program to read.

    Written by orjson (a 1,000-run snapshot, 2-3 MB: ~1 ms against the standard library's
    ~16-21; docs/performance.md). Where its text differs from ``json.dumps(..., sort_keys=True,
    separators=(",", ":"))``, the data does not: characters outside ASCII are written as UTF-8
    rather than as ``\\u`` escapes, and a float in its shortest form (``1e-7``, not ``1e-07``).
    Datetimes and dataclasses are handed to ``str`` as ``json.dumps(default=str)`` does. A float
    that is not finite is written as ``null`` (``json.dumps`` writes ``NaN``, which is not JSON;
    the snapshot holds no floats). What orjson refuses (an integer beyond 64 bits) is left to
    ``json.dumps``.
    """
    import orjson  # only for a compact document (a command's start imports what it uses)

    # Keys sorted and of any scalar type (converted as json.dumps converts them); datetimes
    # and dataclasses handed to ``default`` as json.dumps hands them to str.
    options = (
        orjson.OPT_SORT_KEYS
        | orjson.OPT_NON_STR_KEYS
        | orjson.OPT_PASSTHROUGH_DATETIME
        | orjson.OPT_PASSTHROUGH_DATACLASS
    )
    try:
        return orjson.dumps(data, default=str, option=options).decode()
    except orjson.JSONEncodeError:
        return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def dumps(data: Any) -> str:
    """``data`` as ``json.dumps(data, indent=2, sort_keys=True, default=str)`` writes it."""
    try:
        return _text(data, 0)
    except _Unusual:
        return json.dumps(data, indent=2, sort_keys=True, default=str)


@lru_cache(maxsize=32)
def _flat(level: int) -> Callable[[Any], str]:
    # One container of scalars at ``level``: compact JSON whose item separator is the newline
    # and indentation of its items; the brackets get theirs in _text. The C encoder itself
    # when there is one (json.JSONEncoder.encode builds it anew on every call).
    pad = "\n" + _INDENT * (level + 1)
    if c_make_encoder is None:  # an interpreter without the C accelerator
        return json.JSONEncoder(sort_keys=True, separators=("," + pad, ": ")).encode
    encode = c_make_encoder(None, str, encode_basestring_ascii, None, ": ", "," + pad,
                            True, False, True)  # fmt: skip
    return lambda value: "".join(encode(value, 0))


_SCALAR = _flat(0)
_WORDS = {None: "null", True: "true", False: "false"}


def _scalar(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return encode_basestring_ascii(value)
    if kind is int:
        return int.__repr__(value)
    if kind is bool or value is None:
        return _WORDS[value]
    return _SCALAR(value)  # a float: written as json writes it (repr, Infinity, NaN)


def _text(value: Any, level: int) -> str:
    kind = type(value)
    if kind in _PLAIN:
        return _scalar(value)
    if isinstance(value, dict):
        return _container(value, level, "{", "}") if value else "{}"
    if isinstance(value, list | tuple):
        return _container(value, level, "[", "]") if value else "[]"
    raise _Unusual


def _container(value: Any, level: int, opening: str, closing: str) -> str:
    pad, close = "\n" + _INDENT * (level + 1), "\n" + _INDENT * level
    is_dict = opening == "{"
    if _PLAIN.issuperset(map(type, value.values() if is_dict else value)):
        # Keys of any kind are converted and sorted by the C encoder as json.dumps does.
        text = _flat(level)(value)
        return opening + pad + text[1:-1] + close + closing
    if not is_dict:
        parts = [_text(item, level + 1) for item in value]
    elif _KEYS.issuperset(map(type, value)):
        parts = [
            encode_basestring_ascii(key) + ": " + _text(value[key], level + 1)
            for key in sorted(value)
        ]
    else:
        raise _Unusual  # json.dumps converts such keys; left to it
    return opening + pad + ("," + pad).join(parts) + close + closing
