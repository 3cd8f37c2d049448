"""``metawsm metrics serve``: the Prometheus exporter and the health endpoints of the deployment.

One exporter answers for every process: it reads the database at scrape time (metawsm.ops), so
it may run anywhere that reaches the database and Redis, and survives any worker's restart.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

import click

from metawsm.cli.context import AppContext, pass_app


@click.group("metrics")
def metrics() -> None:
    """Prometheus metrics and health endpoints (docs/metrics.md).

    \b
    Example:
      metawsm metrics serve --port 9808
    """


@metrics.command("serve")
@click.option("--address", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(0, 65535), default=9808, show_default=True)
@pass_app
def serve(app: AppContext, address: str, port: int) -> None:
    """Serve /metrics, /healthz and /readyz until SIGTERM or Ctrl-C.

    Basic auth on /metrics and /readyz when METAWSM_METRICS_BASIC_AUTH=user:password is set.
    A port already taken is exit 1; a database or broker that is down is not an error: the
    scrape says so (metawsm_database_up, metawsm_broker_up) and /readyz answers 503. A
    database that does not exist is exit 3 (it is never created here).

    \b
    Example:
      metawsm metrics serve --address 127.0.0.1 --port 9808
    """
    from metawsm.errors import PortTaken
    from metawsm.ops.server import MetricsApp, make_server
    from metawsm.storage.engine import build_engine

    settings = app.settings
    app.require_database()
    engine = build_engine(settings)
    try:
        server = make_server(MetricsApp(engine, settings), address, port)
    except OSError as exc:
        raise PortTaken(
            f"cannot listen on {address}:{port} ({exc.strerror}): another metrics server or"
            " program uses it; stop it, or use --port"
        ) from None
    bound = server.server_address[1]
    auth = "basic auth on" if settings.metrics_basic_auth else "no auth"
    click.echo(f"metrics: serving http://{address}:{bound}/metrics ({auth})", err=True)

    def stop(_signum: int, _frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        engine.dispose()
    click.echo("metrics: stopped", err=True)
