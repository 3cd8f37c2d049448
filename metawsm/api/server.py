"""Serving the API with uvicorn: ``metawsm api`` calls :func:`serve`; tests run
:func:`make_server` in a thread."""

from __future__ import annotations

import gc
import logging
from typing import TYPE_CHECKING

import uvicorn

from metawsm.api.app import create_app
from metawsm.api.state import ApiOptions

if TYPE_CHECKING:
    from metawsm.bootstrap import Container

# Open streams are closed after this long when the server stops (seconds).
GRACEFUL_S = 5


def make_server(
    container: Container, address: str, port: int, options: ApiOptions, *, quiet: bool = False
) -> uvicorn.Server:
    """A uvicorn server of the API over ``container`` on ``address:port`` (not started)."""
    config = uvicorn.Config(
        create_app(container, options),
        host=address,
        port=port,
        log_level="warning" if quiet else "info",
        access_log=not quiet,
        # A proxy's X-Forwarded-For and -Proto are believed only from the proxies named
        # (--trusted-proxy): then the client's address keys the failed-authentication limit and
        # an HTTPS scheme makes the board's session cookie Secure. Anyone else could forge them.
        proxy_headers=bool(options.trusted_proxies),
        forwarded_allow_ips=list(options.trusted_proxies) or None,
        server_header=False,
        timeout_graceful_shutdown=GRACEFUL_S,
    )
    return uvicorn.Server(config)


def serve(container: Container, address: str, port: int, options: ApiOptions) -> None:
    """Serve until SIGINT or SIGTERM; ``container``'s engine and broker connections are
    closed after."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        server = make_server(container, address, port, options)
        settle_heap()
        server.run()
    finally:
        container.close()


def settle_heap() -> None:
    """Take every object alive now (modules, classes, the app: most of the process) out of the
    cyclic garbage collector's sight (``gc.freeze``), so that a full collection scans what the
    requests made, not the whole process: unfrozen, one took ~80-90 ms every few dozen board
    pages (docs/performance.md, "The board"). Frozen objects are never collected: call it once,
    when the process has built what it keeps."""
    gc.collect()
    gc.freeze()
