"""Bearer tokens (services/tokens.py): issued once, stored as a hash, proven, listed, revoked.

On SQLite and PostgreSQL, through the driver transactions the CLI uses (storage/dbapi.py).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, text

from metawsm.errors import Forbidden, NotFound, Unauthenticated, UsageError
from metawsm.identity import Identity
from metawsm.services import tokens
from metawsm.storage import dbapi
from tests.fixtures.database import settings_for

NOW = datetime(2026, 12, 6, 12, 0, tzinfo=UTC)
OPERATOR = Identity("operator", "olga")


@pytest.fixture
def writing(db_url: str) -> Iterator[object]:
    """A function opening one committed driver transaction on the test database."""
    settings = settings_for(db_url)
    yield lambda: dbapi.write_transaction(settings)


def issue(writing: object, **fields: object) -> tokens.IssuedToken:
    spec: dict[str, object] = {
        "actor_type": "agent",
        "actor_name": "builder",
        "run_id": None,
        "expires_in": timedelta(days=30),
        "now": NOW,
        **fields,
    }
    with writing() as db:  # type: ignore[operator]
        return tokens.create_token(db, OPERATOR, **spec)  # type: ignore[arg-type]


def prove(writing: object, bearer: str, now: datetime = NOW) -> Identity:
    with writing() as db:  # type: ignore[operator]
        return tokens.authenticate(db, bearer, now)


def all_token_text(engine: Engine) -> str:
    with engine.connect() as conn:
        return repr(conn.execute(text("SELECT * FROM auth_tokens")).all())


def test_a_token_proves_the_identity_it_was_issued_for(writing: object) -> None:
    issued = issue(writing, run_id="run-1")
    assert issued.token.startswith("mwsm_") and len(issued.token) >= 45
    identity = prove(writing, issued.token)
    assert identity == Identity("agent", "builder", "run-1", issued.info.token_id)


def test_only_the_hash_of_a_token_is_stored(writing: object, engine: Engine) -> None:
    issued = issue(writing)
    stored = all_token_text(engine)
    assert issued.token not in stored
    assert issued.token[len("mwsm_") :] not in stored
    assert tokens.hash_token(issued.token) in stored


def test_two_tokens_are_never_the_same(writing: object) -> None:
    assert issue(writing).token != issue(writing).token


@pytest.mark.parametrize(
    ("bearer", "reason"),
    [("", "missing"), ("Bearer abc", "malformed"), ("mwsm_" + "x" * 43, "unknown")],
)
def test_a_bad_token_is_refused_with_its_reason(writing: object, bearer: str, reason: str) -> None:
    with pytest.raises(Unauthenticated) as refused:
        prove(writing, bearer)
    assert refused.value.reason == reason and refused.value.code == "unauthenticated"
    assert not bearer or bearer not in str(refused.value)


def test_an_expired_token_is_refused_without_showing_it(writing: object) -> None:
    issued = issue(writing, expires_in=timedelta(hours=1))
    assert prove(writing, issued.token, NOW + timedelta(minutes=59)).actor_name == "builder"
    with pytest.raises(Unauthenticated) as refused:
        prove(writing, issued.token, NOW + timedelta(hours=1))
    assert refused.value.reason == "expired"
    assert issued.token not in str(refused.value)


def test_a_revoked_token_is_refused_and_revoking_again_changes_nothing(writing: object) -> None:
    issued = issue(writing, expires_in=None)
    with writing() as db:  # type: ignore[operator]
        first = tokens.revoke_token(db, OPERATOR, issued.info.token_id, NOW)
    with writing() as db:  # type: ignore[operator]
        again = tokens.revoke_token(db, Identity("operator", "other"), issued.info.token_id, NOW)
    assert first.revoked_at == again.revoked_at == NOW and again.revoked_by == "operator/olga"
    with pytest.raises(Unauthenticated) as refused:
        prove(writing, issued.token)
    assert refused.value.reason == "revoked"


def test_revoking_an_unknown_token_is_not_found(writing: object) -> None:
    with writing() as db, pytest.raises(NotFound):  # type: ignore[operator]
        tokens.revoke_token(db, OPERATOR, "tok-nope", NOW)


def test_the_list_shows_every_token_but_never_a_token_or_its_hash(writing: object) -> None:
    active = issue(writing)
    revoked = issue(writing, actor_type="human", actor_name="hana")
    with writing() as db:  # type: ignore[operator]
        tokens.revoke_token(db, OPERATOR, revoked.info.token_id, NOW)
        listed = [t.as_dict(NOW) for t in tokens.list_tokens(db, OPERATOR)]
    assert [(t["token_id"], t["status"]) for t in listed] == [
        (active.info.token_id, "active"),
        (revoked.info.token_id, "revoked"),
    ]
    shown = repr(listed)
    for issued in (active, revoked):
        assert issued.token not in shown and tokens.hash_token(issued.token) not in shown


@pytest.mark.parametrize("actor_type", ["agent", "human", "system"])
def test_only_operators_manage_tokens(writing: object, engine: Engine, actor_type: str) -> None:
    someone = Identity(actor_type, "x", token_id="tok-1")
    issued = issue(writing)
    before = all_token_text(engine)
    with writing() as db:  # type: ignore[operator]
        for attempt in (
            lambda d: tokens.create_token(
                d, someone, actor_type="operator", actor_name="me", run_id=None,
                expires_in=None, now=NOW,
            ),
            lambda d: tokens.list_tokens(d, someone),
            lambda d: tokens.revoke_token(d, someone, issued.info.token_id, NOW),
        ):  # fmt: skip
            with pytest.raises(Forbidden) as refused:
                attempt(db)
            assert refused.value.rule == "tokens_are_for_operators"
    assert all_token_text(engine) == before


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"actor_type": "robot"}, "--actor-type"),
        ({"actor_name": "  "}, "--actor-name"),
        ({"actor_name": "n" * 513}, "--actor-name"),
        ({"run_id": "r" * 513}, "--run-id"),
    ],
)
def test_a_bad_field_is_refused_by_name_and_nothing_is_written(
    writing: object, engine: Engine, fields: dict[str, object], named: str
) -> None:
    with pytest.raises(UsageError, match=named):
        issue(writing, **fields)
    assert all_token_text(engine) == "[]"


@pytest.mark.parametrize(
    ("text_", "expected"),
    [("30d", timedelta(days=30)), ("12h", timedelta(hours=12)), ("90m", timedelta(minutes=90)),
     ("45s", timedelta(seconds=45)), ("never", None), (" 7D ", timedelta(days=7))],
)  # fmt: skip
def test_expiry_durations(text_: str, expected: timedelta | None) -> None:
    assert tokens.parse_expiry(text_) == expected


@pytest.mark.parametrize("text_", ["", "30", "d", "-1d", "0d", "1.5h", "2w", "3651d"])
def test_a_bad_expiry_names_the_flag(text_: str) -> None:
    with pytest.raises(UsageError, match="--expires"):
        tokens.parse_expiry(text_)


def test_a_failed_authentication_is_counted_by_reason(writing: object, engine: Engine) -> None:
    with writing() as db:  # type: ignore[operator]
        for bearer in ("mwsm_unknown", "mwsm_unknown2", "nope"):
            try:
                tokens.authenticate(db, bearer, NOW)
            except Unauthenticated as exc:
                tokens.record_failed_authentication(db, exc, "test")
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT labels, SUM(value) FROM ops_counters WHERE name = :n GROUP BY labels"),
            {"n": tokens.AUTH_FAILURES},
        ).all()
    assert sorted((labels, int(total)) for labels, total in rows) == [
        ('reason="malformed"', 1),
        ('reason="unknown"', 2),
    ]
