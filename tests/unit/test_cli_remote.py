"""The command line's HTTP client (metawsm/cli/remote.py): the API's errors become the exit codes
of the same failures run locally, and no secret reaches a message."""

from __future__ import annotations

import pytest

from metawsm.cli.remote import ApiClient, ApiRefused, segment
from metawsm.errors import (
    EXIT_FAILED,
    EXIT_RUN_STOPPED,
    EXIT_TIMEOUT,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    Unreachable,
    UsageError,
)
from metawsm.transport.redis_server import free_port


@pytest.mark.parametrize(
    ("status", "code", "exit_code"),
    [
        (401, "unauthenticated", EXIT_FAILED),
        (403, "forbidden", EXIT_FAILED),
        (404, "not_found", EXIT_FAILED),
        (409, "rejected", EXIT_FAILED),
        (409, "run_stopped", EXIT_RUN_STOPPED),
        (409, "idempotency_key_reused", EXIT_USAGE),
        (413, "request_too_large", EXIT_USAGE),
        (422, "invalid_input", EXIT_USAGE),
        (429, "too_many_failures", EXIT_FAILED),
        (503, "database_unavailable", EXIT_UNREACHABLE),
        (504, "wait_timeout", EXIT_TIMEOUT),
        (500, "internal", EXIT_FAILED),
    ],
)
def test_an_api_error_exits_as_the_same_failure_does_locally(
    status: int, code: str, exit_code: int
) -> None:
    refused = ApiRefused(status, {"code": code, "message": "m", "field": "body.title", "rule": "r"})
    assert refused.exit_code == exit_code
    assert (refused.api_code, refused.field, refused.rule) == (code, "body.title", "r")
    # Only the refusals that have a code locally print {"error": ...} with --json (cli main).
    assert refused.code == (code if code in ("forbidden", "unauthenticated") else None)


def test_a_refused_token_names_its_rule_as_the_local_refusal_does() -> None:
    refused = ApiRefused(401, {"code": "unauthenticated", "message": "expired", "rule": "expired"})
    assert refused.reason == "expired"  # type: ignore[attr-defined]
    assert str(refused) == "METAWSM_TOKEN refused by the API: expired"


def test_an_error_body_that_is_not_ours_still_has_a_code() -> None:
    assert ApiRefused(502, {}).api_code == "http_502"


@pytest.mark.parametrize("url", ["", "127.0.0.1:8710", "ftp://host", "http://"])
def test_an_api_url_that_is_not_http_is_a_usage_error_naming_the_variable(url: str) -> None:
    with pytest.raises(UsageError, match="METAWSM_API_URL"):
        ApiClient(url, "mwsm_secret")


def test_an_api_that_does_not_answer_is_unreachable_without_the_password_or_token() -> None:
    client = ApiClient(f"http://user:hunter2@127.0.0.1:{free_port()}", "mwsm_secret")
    with pytest.raises(Unreachable) as raised:
        client.get("/forum/threads")
    assert raised.value.exit_code == EXIT_UNREACHABLE
    assert "127.0.0.1" in str(raised.value)
    assert "hunter2" not in str(raised.value) and "mwsm_secret" not in str(raised.value)


def test_an_id_is_one_path_segment() -> None:
    assert segment("a/b c") == "a%2Fb%20c"
