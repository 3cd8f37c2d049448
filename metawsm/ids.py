"""Identifier generation: time-ordered, unique across processes, safe in URLs and shells."""

from __future__ import annotations

import os
import time


def new_id(prefix: str) -> str:
    """A new id ``<prefix>-<12 hex of ms clock><10 random hex>``: sorts by creation time."""
    millis = time.time_ns() // 1_000_000
    # os.urandom is what secrets.token_hex reads; importing secrets (hmac, hashlib) costs a
    # command-line write ~10 ms.
    return f"{prefix}-{millis:012x}{os.urandom(5).hex()}"
