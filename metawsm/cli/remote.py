"""The command line over the HTTP API: a small client of ``/api/v1`` on the standard library.

With ``METAWSM_API_URL`` set (and ``METAWSM_TOKEN``, the bearer token), the commands that have
an endpoint (``forum``, ``close``, ``run``, ``status``, ``dlq``, ``command show``) send
their request to the API instead of opening the database or Redis, and print what the API
answers with the same renderers: the API answers what ``--json`` prints. An agent on another
machine needs only those two variables (docs/api.md, "The command line over the API").

``http.client`` keeps the start-up of a command as light as a local read: no httpx, no
pydantic, no database driver is imported (tests/unit/test_import_budget.py). It is imported
when a request is made: a local command imports this module to learn that it is local, and
``http.client`` brings ``ssl`` and ``email`` (~5 ms of a process's start).

An error of the API (``{code, message, field, rule}``) becomes :class:`ApiRefused` carrying the
exit code the same failure has locally: 403 and 409 exit 1, 422 exits 2, 503 exits 3, 504
exits 4, 409 ``run_stopped`` exits 5; an API that does not answer is exit 3.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from metawsm.errors import (
    EXIT_FAILED,
    EXIT_RUN_STOPPED,
    EXIT_TIMEOUT,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    MetawsmError,
    Unreachable,
    UsageError,
)
from metawsm.masking import mask_url
from metawsm.settings import env_default

if TYPE_CHECKING:
    import http.client

API_URL_ENV = "METAWSM_API_URL"
TOKEN_ENV = "METAWSM_TOKEN"
PREFIX = "/api/v1"
# The commands that talk to the API when METAWSM_API_URL is set; one of their subcommands
# without an endpoint refuses to run rather than open a database (AppContext).
OVER_THE_API = ("forum", "run", "status", "watch", "close", "dlq", "command")
# How long a request that does not wait may take (seconds): the API answers reads at once.
READ_TIMEOUT_S = 60.0
# Added to a request's own wait: the server answers its 504 a little after the wait ends.
WAIT_MARGIN_S = 30.0
# Between two attempts to resume a dropped stream (seconds).
RECONNECT_S = 1.0

# The exit code of each error code of the API (docs/api.md, "Errors"); else by status.
_EXIT_BY_CODE = {
    "run_stopped": EXIT_RUN_STOPPED,
    "idempotency_key_reused": EXIT_USAGE,
    "invalid_input": EXIT_USAGE,
    "request_too_large": EXIT_USAGE,
    "wait_timeout": EXIT_TIMEOUT,
}
_REFUSALS = ("forbidden", "unauthenticated")
_EXIT_BY_STATUS = {422: EXIT_USAGE, 413: EXIT_USAGE, 503: EXIT_UNREACHABLE, 504: EXIT_TIMEOUT}


class ApiRefused(MetawsmError):
    """The API answered an error: its ``api_code``, ``rule`` (``reason`` for a refused token),
    ``field``, HTTP ``status`` and the rest of its body (``extra``); ``exit_code`` is the one
    the command has for the same failure run locally. ``api_code`` is the API's code; ``code``
    is set only for the refusals that have one locally too (``forbidden``, ``unauthenticated``:
    with ``--json`` they are printed on stdout as well)."""

    code: str | None = None

    def __init__(self, status: int, body: Mapping[str, Any]) -> None:
        self.status = status
        self.api_code = str(body.get("code") or f"http_{status}")
        if self.api_code in _REFUSALS:  # as locally, --json prints these on stdout (cli main)
            self.code = self.api_code
        self.field: str | None = body.get("field")
        self.rule: str | None = body.get("rule")
        if status == 401 and self.rule:
            self.reason = self.rule
        self.extra = {k: v for k, v in body.items() if k not in ("code", "message")}
        self.exit_code = _EXIT_BY_CODE.get(self.api_code, _EXIT_BY_STATUS.get(status, EXIT_FAILED))
        message = str(body.get("message") or f"the API answered {status}")
        if status == 401:
            message = f"{TOKEN_ENV} refused by the API: {message}"
        super().__init__(message)


def api_mode() -> bool:
    """True when ``METAWSM_API_URL`` is set: the commands talk to the API."""
    return env_default("API_URL") is not None


def client_from_env() -> ApiClient:
    """The client of ``METAWSM_API_URL`` with ``METAWSM_TOKEN``.

    Raises:
        UsageError: the URL is not ``http(s)://host[:port]``, or no token is set.
    """
    url = env_default("API_URL") or ""
    token = env_default("TOKEN")
    if token is None:
        raise UsageError(f"{API_URL_ENV} is set but {TOKEN_ENV} is not: the API needs a token")
    return ApiClient(url, token)


class ApiClient:
    """Requests to one API as one bearer token; one connection, reopened when it drops."""

    def __init__(self, url: str, token: str) -> None:
        # urllib.parse only over the API: every local command imports this module to learn
        # that it is local, and urllib.parse costs ~12 M instructions.
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise UsageError(
                f"{API_URL_ENV} {mask_url(url)!r}: must be http(s)://host[:port]"
                " (e.g. http://127.0.0.1:8710)"
            )
        self.url = mask_url(url.rstrip("/"))  # shown in messages: never a password
        self._secure = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port
        self._base = parts.path.rstrip("/")
        self._token = token

    def get(self, path: str, query: Mapping[str, Any] | None = None, wait_s: float = 0) -> Any:
        """The JSON body of ``GET /api/v1{path}?query`` (None values left out).

        Raises:
            ApiRefused: the API answered an error.
            Unreachable: the API does not answer.
        """
        return self.request("GET", path, query, wait_s=wait_s)[1]

    def post(
        self,
        path: str,
        body: Mapping[str, Any] | None = None,
        query: Mapping[str, Any] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        wait_s: float = 0,
    ) -> tuple[int, Any]:
        """(status, JSON body) of ``POST /api/v1{path}`` with ``body`` as JSON.

        Raises:
            ApiRefused: the API answered an error.
            Unreachable: the API does not answer.
        """
        return self.request("POST", path, query, body or {}, headers=headers, wait_s=wait_s)

    def request(
        self,
        method: str,
        path: str,
        query: Mapping[str, Any] | None = None,
        body: Mapping[str, Any] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        wait_s: float = 0,
    ) -> tuple[int, Any]:
        """(status, JSON body) of one request; an error status raises :class:`ApiRefused`."""
        sent = {"Accept": "application/json", **self._auth(), **(headers or {})}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        connection = self._connect(READ_TIMEOUT_S + wait_s)
        failures = _failures()
        try:
            connection.request(method, self._target(path, query), body=data, headers=sent)
            response = connection.getresponse()
            raw = response.read()
        except failures as exc:
            raise self._unreachable(exc) from None
        finally:
            connection.close()
        answer = _json_of(raw, response.status)
        if response.status >= 400:
            raise ApiRefused(response.status, answer if isinstance(answer, dict) else {})
        return response.status, answer

    def events(self, query: Mapping[str, Any], cursor: int) -> Iterator[dict[str, Any]]:
        """Every event of ``GET /events/stream`` after ``cursor``, as they commit, forever: a
        dropped connection is resumed with ``Last-Event-ID`` (each event once, in order)."""
        resumed = False
        while True:
            try:
                for event in self._stream_once(query, cursor):
                    cursor = int(event["sequence"])
                    yield event
            except Unreachable:
                if not resumed:
                    raise  # never connected: say so rather than retry for ever
                time.sleep(RECONNECT_S)  # a pause between attempts, not a synchronisation
            # The server ended the stream (it restarts): resume after the last event seen.
            resumed = True

    def _stream_once(self, query: Mapping[str, Any], cursor: int) -> Iterator[dict[str, Any]]:
        headers = {"Accept": "text/event-stream", "Last-Event-ID": str(cursor), **self._auth()}
        connection = self._connect(None)  # keep-alives come every 15 s; no read timeout
        failures = _failures()
        try:
            connection.request("GET", self._target("/events/stream", query), headers=headers)
            response = connection.getresponse()
            if response.status >= 400:
                answer = _json_of(response.read(), response.status)
                raise ApiRefused(response.status, answer if isinstance(answer, dict) else {})
            yield from _sse_data(response)
        except failures as exc:
            raise self._unreachable(exc) from None
        finally:
            connection.close()

    def _auth(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self._token}"}

    def _connect(self, timeout_s: float | None) -> http.client.HTTPConnection:
        import http.client

        kind = http.client.HTTPSConnection if self._secure else http.client.HTTPConnection
        return kind(self._host, self._port, timeout=timeout_s)

    def _target(self, path: str, query: Mapping[str, Any] | None) -> str:
        from urllib.parse import urlencode

        pairs = {k: _query_value(v) for k, v in (query or {}).items() if v is not None}
        return f"{self._base}{PREFIX}{path}" + (f"?{urlencode(pairs)}" if pairs else "")

    def _unreachable(self, exc: BaseException) -> Unreachable:
        why = "timed out" if isinstance(exc, TimeoutError) else str(exc) or repr(exc)
        return Unreachable(
            f"the API at {self.url} does not answer ({why}); is metawsm api running there?"
        )


def _failures() -> tuple[type[BaseException], ...]:
    # What a request that did not get through raises (http.client imported on first use).
    import http.client

    return (OSError, http.client.HTTPException)


def segment(value: str) -> str:
    """``value`` quoted as one path segment (an id with ``/`` stays one segment)."""
    from urllib.parse import quote

    return quote(value, safe="")


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _json_of(raw: bytes, status: int) -> Any:
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return {"code": f"http_{status}", "message": raw[:200].decode(errors="replace")}


def _sse_data(response: http.client.HTTPResponse) -> Iterator[dict[str, Any]]:
    """The JSON data of each Server-Sent Events message (comments and ids skipped: the event
    carries its own ``sequence``)."""
    data: list[str] = []
    for raw in response:
        line = raw.decode().rstrip("\r\n")
        if line.startswith("data:"):
            data.append(line[5:].strip())
        elif not line and data:
            yield json.loads("\n".join(data))
            data = []
