"""``metawsm api``: serve the HTTP API (docs/api.md) until Ctrl-C or SIGTERM.

Loopback by default: TLS is a reverse proxy's job (docs/api.md has a sample configuration).
FastAPI and uvicorn are imported only here, when the command runs.
"""

from __future__ import annotations

import click

from metawsm.cli.context import AppContext, pass_app

DEFAULT_PORT = 8710


class ProxyAddress(click.ParamType[str]):
    """An IP address or network (``10.0.0.5``, ``10.0.0.0/24``, ``::1``), written back in its
    normal form; ``*`` and host names are refused (a header anyone may send is not evidence)."""

    name = "address"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> str:
        """The address or network, or a usage error naming the option and the rule (exit 2)."""
        import ipaddress

        text = str(value).strip()
        try:
            if "/" in text:
                return str(ipaddress.ip_network(text, strict=False))
            return str(ipaddress.ip_address(text))
        except ValueError:
            self.fail(f"{text!r} is not an IP address or network (rule: a proxy is named by its"
                      " address, e.g. 127.0.0.1 or 10.0.0.0/24; not * or a host name)",
                      param, ctx)  # fmt: skip


@click.command("api")
@click.option("--address", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", type=click.IntRange(1, 65535), default=DEFAULT_PORT, show_default=True)
@click.option(
    "--max-request-bytes",
    type=click.IntRange(1024, 64 * 1024 * 1024),
    default=1024 * 1024,
    show_default=True,
    envvar="METAWSM_API_MAX_REQUEST_BYTES",
    help="Larger request bodies are refused with 413 ($METAWSM_API_MAX_REQUEST_BYTES).",
)
@click.option(
    "--cors-origin",
    "cors_origins",
    multiple=True,
    envvar="METAWSM_API_CORS_ORIGINS",
    help="Allow browsers from this origin (repeat; none by default: CORS off).",
)
@click.option(
    "--trusted-proxy",
    "trusted_proxies",
    multiple=True,
    type=ProxyAddress(),
    envvar="METAWSM_API_TRUSTED_PROXIES",
    help="Believe X-Forwarded-For and X-Forwarded-Proto from this reverse proxy's address or"
    " network (repeat; none by default: those headers are ignored).",
)
@pass_app
def api(
    app: AppContext,
    address: str,
    port: int,
    max_request_bytes: int,
    cors_origins: tuple[str, ...],
    trusted_proxies: tuple[str, ...],
) -> None:
    """Serve the HTTP API and the live event stream (every endpoint but health and readiness
    needs a bearer token: metawsm token create).

    Listens on loopback unless told otherwise: put a TLS reverse proxy in front of it to serve
    other hosts (docs/api.md). Exits 0 after Ctrl-C or SIGTERM, 3 when the database is
    unreachable or its schema is not at head.

    \b
    Example:
      metawsm api --port 8710
    """
    from metawsm.api.server import serve
    from metawsm.api.state import ApiOptions
    from metawsm.cli.up_cmd import is_loopback

    container = app.container  # checks the schema is at head (exit 3 when not)
    if not is_loopback(address):
        click.echo(
            f"warning: serving on {address} without TLS; put a TLS reverse proxy in front"
            " (docs/api.md, 'TLS')",
            err=True,
        )
    options = ApiOptions(
        max_request_bytes=max_request_bytes,
        cors_origins=cors_origins,
        trusted_proxies=trusted_proxies,
    )
    serve(container, address, port, options)
