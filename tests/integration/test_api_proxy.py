"""Behind a reverse proxy (``metawsm api --trusted-proxy``): X-Forwarded-For and -Proto are
believed from the proxies named and from no one else, on a real uvicorn server. The client's
address then keys the failed-authentication limit (one client's failures do not lock out the
others behind the same proxy) and an HTTPS scheme makes the board's session cookie Secure."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from click.testing import CliRunner

from metawsm.api.state import ApiOptions
from metawsm.cli import cli
from tests.fixtures.api import issue_token, serving
from tests.fixtures.pipeline import Pipeline

THREADS = "/api/v1/forum/threads"
WRONG = {"Authorization": "Bearer mwsm_" + "w" * 43}


PROXIES = {"trusted": ("127.0.0.1",), "another proxy": ("10.9.9.0/24",), "none named": ()}


@pytest.fixture(params=list(PROXIES))
def proxied(request: pytest.FixtureRequest, pipeline: Pipeline) -> Iterator[tuple[str, bool]]:
    """The API with the test's own address named a trusted proxy, only another one, or none;
    and whether this test's requests come from a trusted proxy."""
    trusted = request.param == "trusted"
    options = ApiOptions(trusted_proxies=PROXIES[request.param])
    with serving(pipeline.container, options) as (url, _):
        yield url, trusted


def _from(client_address: str, **headers: str) -> dict[str, str]:
    return {"X-Forwarded-For": client_address, **headers}


def test_failed_authentications_count_per_forwarded_client_only_from_a_trusted_proxy(
    proxied: tuple[str, bool],
) -> None:
    url, trusted = proxied
    with httpx.Client(base_url=url, timeout=30) as c:
        statuses = [
            c.get(THREADS, headers={**WRONG, **_from("203.0.113.7")}).status_code for _ in range(12)
        ]
        assert statuses[0] == 401 and statuses[-1] == 429
        other = c.get(THREADS, headers={**WRONG, **_from("198.51.100.9")})
    # Trusted: another client behind the proxy is not locked out by the first one's failures.
    # Not trusted: the header is anyone's to write, so both count as the proxy's own address.
    assert other.status_code == (401 if trusted else 429), other.text


def test_the_session_cookie_is_secure_when_a_trusted_proxy_says_https(
    proxied: tuple[str, bool], pipeline: Pipeline
) -> None:
    url, trusted = proxied
    token = issue_token(pipeline.engine, "human", "hana")
    with httpx.Client(base_url=url, follow_redirects=False, timeout=30) as browser:
        answer = browser.post(
            "/signin",
            data={"token": token, "next": "/"},
            headers=_from("203.0.113.7", **{"X-Forwarded-Proto": "https"}),
        )
    assert answer.status_code == 303, answer.text
    flags = [part.strip().lower() for part in answer.headers["set-cookie"].split(";")]
    assert flags[0].startswith("metawsm_session=")
    assert ("secure" in flags) is trusted


@pytest.mark.parametrize("value", ["*", "proxy.example.org", "10.0.0.300", ""])
def test_a_trusted_proxy_that_is_not_an_address_is_refused_with_exit_2(value: str) -> None:
    result = CliRunner().invoke(cli, ["api", "--trusted-proxy", value])
    assert result.exit_code == 2, result.output
    assert "--trusted-proxy" in result.output
    assert "is not an IP address or network" in result.output
