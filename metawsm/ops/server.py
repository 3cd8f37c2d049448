"""The metrics server: ``/metrics`` (text exposition), ``/healthz`` (the process lives) and
``/readyz`` (the health checks: 200 or 503 with their JSON), on the standard library's
``ThreadingHTTPServer`` (a scrape every few seconds needs nothing more).

With ``METAWSM_METRICS_BASIC_AUTH=user:password`` every path but ``/healthz`` asks for basic
auth (401 with ``WWW-Authenticate``); the credentials are compared in constant time and never
logged. ``/healthz`` stays open so a liveness probe needs no secret; it tells nothing but "up".
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from sqlalchemy import Engine

from metawsm.ops.exporter import CONTENT_TYPE, render
from metawsm.ops.health import judge
from metawsm.ops.readings import Readings, read
from metawsm.settings import Settings

log = logging.getLogger("metawsm.metrics")
REALM = 'Basic realm="metawsm metrics", charset="UTF-8"'


class MetricsApp:
    """What the server answers, per path, from fresh readings (no state kept between scrapes)."""

    def __init__(
        self, engine: Engine, settings: Settings, reader: Callable[[], Readings] | None = None
    ) -> None:
        self.settings = settings
        self._read = reader or (lambda: read(engine, settings))
        auth = settings.metrics_basic_auth
        self._expected = auth.encode() if auth is not None else None

    def authorized(self, header: str | None) -> bool:
        """True when no auth is configured, or ``header`` carries the configured credentials."""
        if self._expected is None:
            return True
        scheme, _, token = (header or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            given = base64.b64decode(token.strip(), validate=True)
        except (binascii.Error, ValueError):
            return False
        return hmac.compare_digest(given, self._expected)

    def respond(self, path: str) -> tuple[int, str, bytes]:
        """(status, content type, body) for a GET of ``path``."""
        if path == "/healthz":
            return 200, "text/plain; charset=utf-8", b"ok\n"
        if path == "/metrics":
            return 200, CONTENT_TYPE, render(self._read()).encode()
        if path == "/readyz":
            health = judge(self._read(), self.settings)
            body = json.dumps(health.as_dict(), indent=2).encode() + b"\n"
            return (200 if health.healthy else 503), "application/json", body
        return 404, "text/plain; charset=utf-8", b"not found: try /metrics, /healthz, /readyz\n"


def make_handler(app: MetricsApp) -> type[BaseHTTPRequestHandler]:
    """A request handler class bound to ``app``."""

    class Handler(BaseHTTPRequestHandler):
        server_version = "metawsm-metrics"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path != "/healthz" and not app.authorized(self.headers.get("Authorization")):
                self._send(401, "text/plain; charset=utf-8", b"authentication required\n")
                return
            try:
                status, content_type, body = app.respond(path)
            except Exception:
                log.exception("metrics: %s failed", path)
                status, content_type, body = 500, "text/plain; charset=utf-8", b"error\n"
            self._send(status, content_type, body)

        def _send(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            if status == 401:
                self.send_header("WWW-Authenticate", REALM)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            # The request line only (never headers, so never credentials), at DEBUG.
            log.debug("%s %s", self.address_string(), format % args)

    return Handler


def make_server(app: MetricsApp, address: str, port: int) -> ThreadingHTTPServer:
    """A bound server (``port`` 0: any free port; read it from ``server_address``)."""
    server = ThreadingHTTPServer((address, port), make_handler(app))
    server.daemon_threads = True
    return server
