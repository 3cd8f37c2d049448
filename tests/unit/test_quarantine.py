"""What a quarantine dead letter keeps of an element: a stable id, and at most 64 KiB of it."""

from __future__ import annotations

import base64
import hashlib

import pytest

from metawsm.services.quarantine import RAW_LIMIT_BYTES, kept_raw, quarantine_id

LIMIT = 64 * 1024


def test_the_id_is_24_hex_digits_of_the_sha256_of_every_byte() -> None:
    raw = b"garbage"
    assert quarantine_id(raw) == "quarantine-" + hashlib.sha256(raw).hexdigest()[:24]
    assert quarantine_id(raw) == quarantine_id(bytes(raw))  # the same element: the same letter
    assert quarantine_id(b"garbage ") != quarantine_id(raw)
    long_a, long_b = b"x" * (2 * LIMIT) + b"a", b"x" * (2 * LIMIT) + b"b"
    assert quarantine_id(long_a) != quarantine_id(long_b)  # not only the part that is kept
    assert len(quarantine_id(b"")) == len("quarantine-") + 24 <= 128


def test_the_limit_is_64_kib() -> None:
    assert RAW_LIMIT_BYTES == LIMIT


@pytest.mark.parametrize("size", [0, 1, LIMIT - 1, LIMIT])
def test_an_element_up_to_the_limit_is_kept_whole_as_text(size: int) -> None:
    raw = b"a" * size
    assert kept_raw(raw) == {
        "raw": raw.decode(),
        "raw_encoding": "utf-8",
        "raw_bytes": size,
        "truncated": False,
        "sha256": hashlib.sha256(raw).hexdigest(),
    }


def test_a_longer_element_is_cut_at_the_limit_and_says_so() -> None:
    raw = b"a" * LIMIT + b"b" * 10
    kept = kept_raw(raw)
    assert kept["raw"] == "a" * LIMIT
    assert (kept["raw_bytes"], kept["truncated"]) == (LIMIT + 10, True)
    assert kept["sha256"] == hashlib.sha256(raw).hexdigest()


def test_a_character_cut_by_the_limit_is_dropped_whole() -> None:
    raw = b"a" * (LIMIT - 1) + "é".encode() + b"tail"  # é's two bytes straddle the limit
    kept = kept_raw(raw)
    assert (kept["raw"], kept["raw_encoding"], kept["truncated"]) == (
        "a" * (LIMIT - 1),
        "utf-8",
        True,
    )


@pytest.mark.parametrize(
    "raw",
    [b"\xff\xfe garbage \x80", b"ok\x00nul", b"\x80" + b"a" * (2 * LIMIT)],
    ids=["invalid-utf8", "nul", "long-invalid-utf8"],
)
def test_bytes_that_are_not_text_are_kept_as_base64(raw: bytes) -> None:
    kept = kept_raw(raw)
    assert kept["raw_encoding"] == "base64"
    assert base64.b64decode(kept["raw"]) == raw[:LIMIT]
    assert (kept["raw_bytes"], kept["truncated"]) == (len(raw), len(raw) > LIMIT)


def test_an_invalid_byte_before_the_cut_is_not_taken_for_a_cut_character() -> None:
    raw = b"a" * 10 + b"\xc3" + b"a" * LIMIT  # a lone lead byte in the middle
    assert kept_raw(raw)["raw_encoding"] == "base64"
