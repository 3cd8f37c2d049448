"""Bearer tokens: issue one per actor, prove an identity with it, list and revoke them.

A token is ``mwsm_`` followed by 43 URL-safe characters (32 random bytes, 256 bits); it is
shown once, at creation. Only its SHA-256 is stored (``auth_tokens.token_hash``): a token has
far too much entropy to be guessed from its hash, so a slow password hash would only slow down
every request. :func:`authenticate` is one indexed query through the driver (no ORM), on the
hot path of every API request.

Managing tokens is for operators (``tokens_are_for_operators``); the identity doing it is
recorded on the token (``created_by``, ``revoked_by``). Nothing here prints, logs or returns a
token except :func:`create_token`, once, and no error message carries one.
"""

from __future__ import annotations

import hashlib
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from metawsm.errors import Forbidden, NotFound, Unauthenticated, UsageError
from metawsm.identity import ACTOR_TYPES, Identity
from metawsm.ops.catalogue import AUTH_FAILURES
from metawsm.storage.dbapi import Reader, iso, utc

TOKEN_PREFIX = "mwsm_"
TOKEN_BYTES = 32
MAX_NAME_CHARS = 512
MAX_TOKEN_CHARS = 200  # longer input is not one of ours: refused before hashing

log = logging.getLogger(__name__)

_COLUMNS = (
    "token_id, actor_type, actor_name, run_id, created_by, created_at, expires_at,"
    " revoked_at, revoked_by"
)
_BY_HASH = f"SELECT {_COLUMNS} FROM auth_tokens WHERE token_hash = :token_hash"
_BY_ID = f"SELECT {_COLUMNS} FROM auth_tokens WHERE token_id = :token_id"
_ALL = f"SELECT {_COLUMNS} FROM auth_tokens ORDER BY created_at, token_id"
_INSERT = (
    "INSERT INTO auth_tokens (token_id, token_hash, actor_type, actor_name, run_id,"
    " created_by, created_at, expires_at, revoked_at, revoked_by) VALUES (:token_id,"
    " :token_hash, :actor_type, :actor_name, :run_id, :created_by, :created_at, :expires_at,"
    " NULL, NULL)"
)
_REVOKE = (
    "UPDATE auth_tokens SET revoked_at = :now, revoked_by = :by"
    " WHERE token_id = :token_id AND revoked_at IS NULL"
)


@dataclass(frozen=True)
class TokenInfo:
    """What is known of a token, never the token or its hash (for ``token list``)."""

    token_id: str
    actor_type: str
    actor_name: str
    run_id: str | None
    created_by: str
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    revoked_by: str | None

    def status(self, now: datetime) -> str:
        """``active``, ``expired`` or ``revoked`` at ``now``."""
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"

    def as_dict(self, now: datetime) -> dict[str, object]:
        """Plain data for JSON output (timestamps ISO 8601, UTC)."""
        return {
            "token_id": self.token_id,
            "actor_type": self.actor_type,
            "actor_name": self.actor_name,
            "run_id": self.run_id,
            "created_by": self.created_by,
            "created_at": iso(self.created_at),
            "expires_at": iso(self.expires_at),
            "revoked_at": iso(self.revoked_at),
            "revoked_by": self.revoked_by,
            "status": self.status(now),
        }


@dataclass(frozen=True)
class IssuedToken:
    """A token just created: the bearer ``token`` (shown once) and what it proves."""

    token: str
    info: TokenInfo


def hash_token(bearer: str) -> str:
    """SHA-256 hex of a bearer token: what ``auth_tokens.token_hash`` holds."""
    return hashlib.sha256(bearer.encode("utf-8")).hexdigest()


def authenticate(reader: Reader, bearer: str, now: datetime) -> Identity:
    """The identity ``bearer`` proves at ``now`` (one indexed query through the driver).

    Raises:
        Unauthenticated: see :func:`valid_token`.
    """
    info = valid_token(reader, bearer, now)
    return Identity(info.actor_type, info.actor_name, info.run_id, info.token_id)


def valid_token(reader: Reader, bearer: str, now: datetime) -> TokenInfo:
    """What is known of ``bearer`` when it is valid at ``now`` (its expiry: the board's
    session cookie ends with it).

    Raises:
        Unauthenticated: the token is missing, malformed, unknown, expired or revoked
            (``reason``: missing, malformed, unknown, expired, revoked); the message never
            contains the token.
    """
    bearer = bearer.strip()
    if not bearer:
        raise Unauthenticated("no bearer token given", reason="missing")
    if not bearer.startswith(TOKEN_PREFIX) or len(bearer) > MAX_TOKEN_CHARS:
        raise Unauthenticated(
            f"not a metawsm token (they start with {TOKEN_PREFIX})", reason="malformed"
        )
    rows = reader.rows(_BY_HASH, {"token_hash": hash_token(bearer)})
    if not rows:
        raise Unauthenticated("unknown token (never issued, or mistyped)", reason="unknown")
    info = _info(rows[0])
    if info.revoked_at is not None:
        raise Unauthenticated(
            f"token {info.token_id} was revoked at {iso(info.revoked_at)}", reason="revoked"
        )
    if info.expires_at is not None and info.expires_at <= now:
        raise Unauthenticated(
            f"token {info.token_id} expired at {iso(info.expires_at)}", reason="expired"
        )
    return info


def record_failed_authentication(db: Reader, failure: Unauthenticated, source: str) -> None:
    """Count a failed authentication (``metawsm_auth_failures_total{reason}``) in ``db``'s
    writing transaction and log it with its ``source`` (an address, ``cli``), never the token."""
    from metawsm.ops.increments import count, record_on_reader

    log.warning("authentication failed from %s: %s (%s)", source, failure.reason, failure)
    record_on_reader(db, [count(AUTH_FAILURES, reason=failure.reason)])


def require_token_manager(acting: Identity) -> None:
    """Only operators create, list and revoke tokens.

    Raises:
        Forbidden: ``tokens_are_for_operators``.
    """
    if acting.actor_type != "operator":
        raise Forbidden(
            f"{acting.label} may not manage tokens: only operators manage tokens",
            rule="tokens_are_for_operators",
        )


def create_token(
    db: Reader,
    acting: Identity,
    *,
    actor_type: str,
    actor_name: str,
    run_id: str | None,
    expires_in: timedelta | None,
    now: datetime,
) -> IssuedToken:
    """Issue a token proving (``actor_type``, ``actor_name``[, ``run_id``]), valid for
    ``expires_in`` (None: until revoked); only its hash is written, in ``db``'s transaction.

    Raises:
        Forbidden: ``acting`` is not an operator.
        UsageError: a field breaks its rule (named); nothing is written.
    """
    require_token_manager(acting)
    actor_type, actor_name, run_id = _checked(actor_type, actor_name, run_id, expires_in)
    from metawsm.ids import new_id

    token = TOKEN_PREFIX + secrets.token_urlsafe(TOKEN_BYTES)
    info = TokenInfo(
        token_id=new_id("tok"),
        actor_type=actor_type,
        actor_name=actor_name,
        run_id=run_id,
        created_by=acting.label,
        created_at=now,
        expires_at=now + expires_in if expires_in is not None else None,
        revoked_at=None,
        revoked_by=None,
    )
    db.execute(
        _INSERT,
        {
            "token_id": info.token_id,
            "token_hash": hash_token(token),
            "actor_type": actor_type,
            "actor_name": actor_name,
            "run_id": run_id,
            "created_by": info.created_by,
            "created_at": db.time(now),
            "expires_at": db.time(info.expires_at),
        },
    )
    return IssuedToken(token, info)


def list_tokens(db: Reader, acting: Identity) -> list[TokenInfo]:
    """Every token, oldest first (revoked and expired ones too), without token or hash.

    Raises:
        Forbidden: ``acting`` is not an operator.
    """
    require_token_manager(acting)
    return [_info(row) for row in db.rows(_ALL)]


def revoke_token(db: Reader, acting: Identity, token_id: str, now: datetime) -> TokenInfo:
    """Revoke a token at ``now`` (revoking a revoked token changes nothing); the token as it
    now stands.

    Raises:
        Forbidden: ``acting`` is not an operator.
        NotFound: no token has that id.
    """
    require_token_manager(acting)
    db.execute(_REVOKE, {"token_id": token_id, "now": db.time(now), "by": acting.label})
    rows = db.rows(_BY_ID, {"token_id": token_id})
    if not rows:
        raise NotFound(f"no token {token_id} (see metawsm token list)")
    return _info(rows[0])


def parse_expiry(text: str) -> timedelta | None:
    """``30d``, ``12h``, ``90m``, ``3600s`` as a duration; ``never`` as None.

    Raises:
        UsageError: naming ``--expires`` and the accepted forms.
    """
    text = text.strip().lower()
    if text == "never":
        return None
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    number, unit = text[:-1], text[-1:]
    if unit not in units or not number.isdigit() or int(number) <= 0:
        raise UsageError(
            f"--expires: must be a positive whole number of s, m, h or d (e.g. 30d), or never"
            f" (got {text!r})"
        )
    seconds = int(number) * units[unit]
    if seconds > 3650 * 86400:
        raise UsageError("--expires: must be at most 3650d (use never for no expiry)")
    return timedelta(seconds=seconds)


def _checked(
    actor_type: str, actor_name: str, run_id: str | None, expires_in: timedelta | None
) -> tuple[str, str, str | None]:
    """The token's fields, trimmed and checked.

    Raises:
        UsageError: naming the field and its rule.
    """
    actor_type = actor_type.strip().lower()
    if actor_type not in ACTOR_TYPES:
        raise UsageError(f"--actor-type: must be one of {', '.join(ACTOR_TYPES)}")
    actor_name = actor_name.strip()
    if not actor_name or len(actor_name) > MAX_NAME_CHARS:
        raise UsageError(f"--actor-name: is required, at most {MAX_NAME_CHARS} characters")
    run_id = run_id.strip() if run_id else None
    if run_id is not None and len(run_id) > MAX_NAME_CHARS:
        raise UsageError(f"--run-id: must be at most {MAX_NAME_CHARS} characters")
    if expires_in is not None and expires_in <= timedelta(0):
        raise UsageError("--expires: must be in the future")
    return actor_type, actor_name, run_id


def _info(row: dict[str, Any]) -> TokenInfo:
    created_at = utc(row["created_at"])
    assert created_at is not None
    return TokenInfo(
        token_id=row["token_id"],
        actor_type=row["actor_type"],
        actor_name=row["actor_name"],
        run_id=row["run_id"],
        created_by=row["created_by"],
        created_at=created_at,
        expires_at=utc(row["expires_at"]),
        revoked_at=utc(row["revoked_at"]),
        revoked_by=row["revoked_by"],
    )
