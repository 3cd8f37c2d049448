"""``metawsm up``: the whole local stack on embedded defaults, in one supervised command.

Migrates the database to head, makes sure a broker answers (starting a private redis-server when
none does on a loopback URL, and saying so), then runs worker, beat and Flower as child processes
with each output line prefixed by its name, like foreman or honcho. Ctrl-C or SIGTERM stops them
all (a second Ctrl-C skips the grace period); a child that exits on its own stops the rest and
fails the command.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import IO
from urllib.parse import SplitResult, unquote, urlsplit

import click

from metawsm.cli.context import AppContext, pass_app
from metawsm.cli.up_checks import one_stack_per_database, ready_summary, require_free_port
from metawsm.database_location import state_directory
from metawsm.errors import BrokerUnreachable, MetawsmError
from metawsm.settings import Settings, mask_url
from metawsm.storage.engine import build_engine
from metawsm.storage.migrate import upgrade
from metawsm.transport.broker_claim import broker_claimed
from metawsm.transport.redis_server import RedisServer, ping, wait_for

BROKER_PING_TIMEOUT_S = 1.0
# Celery's warm shutdown lets running tasks finish: give it this long before SIGKILL.
STOP_TIMEOUT_S = 30.0
WATCH_INTERVAL_S = 0.2
PUMP_JOIN_TIMEOUT_S = 5.0
DEFAULT_REDIS_PORT = 6379
FLOWER_AUTH_ENV = "METAWSM_FLOWER_BASIC_AUTH"


@dataclass(frozen=True)
class ProcessSpec:
    """One child process of the stack: its display name, its argv, and how it shows it is ready.

    Ready once ``ready_lines`` of its output lines matched ``ready_pattern`` (a worker prints
    ``<name> ready.`` per solo worker), or once ``ready_port`` on 127.0.0.1 accepts connections;
    with neither, once started.
    """

    name: str
    argv: tuple[str, ...]
    ready_pattern: str | None = None
    ready_lines: int = 1
    ready_port: int | None = None


def process_specs(
    concurrency: int,
    flower_port: int | None,
    python: str = sys.executable,
    metrics_port: int | None = None,
    api_port: int | None = None,
) -> list[ProcessSpec]:
    """The Procfile's processes as argvs (``flower_port=None`` leaves Flower out,
    ``metrics_port=None`` the metrics exporter, ``api_port=None`` the HTTP API)."""
    base = (python, "-m", "metawsm")
    specs = [
        ProcessSpec(
            "worker",
            (*base, "worker", "--role", "all", "--concurrency", f"{concurrency}"),
            ready_pattern=r"@\S+ ready\.",
            ready_lines=concurrency,
        ),
        ProcessSpec("beat", (*base, "beat"), ready_pattern=r"beat: Starting"),
    ]
    if flower_port is not None:
        specs.append(
            ProcessSpec(
                "flower", (*base, "flower", "--port", str(flower_port)), ready_port=flower_port
            )
        )
    if metrics_port is not None:
        specs.append(
            ProcessSpec(
                "metrics",
                (*base, "metrics", "serve", "--port", str(metrics_port)),
                ready_port=metrics_port,
            )
        )
    if api_port is not None:
        specs.append(
            ProcessSpec("api", (*base, "api", "--port", str(api_port)), ready_port=api_port)
        )
    return specs


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback IP addresses (``127.0.0.0/8``, ``::1``)."""
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def prefix_line(name: str, width: int, line: str) -> str:
    """``line`` (without its line ending) behind the process ``name`` padded to ``width``."""
    return f"{name.ljust(width)} | {line.rstrip(chr(13) + chr(10))}"


def migrate_database(settings: Settings) -> None:
    """Bring the database schema to the migration head.

    Raises:
        DatabaseUnreachable: the database cannot be opened or reached.
        UsageError: the database is at a revision this code does not know.
    """
    engine = build_engine(settings)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    click.echo(f"up: database at head: {mask_url(settings.database_url)}", err=True)


def ensure_broker(url: str, data_dir: Path) -> RedisServer | None:
    """Return None when a Redis answers at ``url``, else start and return a private one.

    Raises:
        BrokerUnreachable: nothing answers and the URL is not one a private server can serve
            (not loopback, TLS, or its port is taken by something that does not answer PING).
    """
    if ping(url, BROKER_PING_TIMEOUT_S):
        return None
    parts = urlsplit(url)
    _check_can_host(url, parts)
    host = parts.hostname or "127.0.0.1"
    server = RedisServer(
        parts.port or DEFAULT_REDIS_PORT,
        dir=data_dir,
        appendonly=True,
        password=unquote(parts.password) if parts.password else None,
        bind="127.0.0.1" if host.lower().startswith("localhost") else host,
    )
    server.start()
    click.echo(
        f"no Redis answered at {mask_url(url)}; started a private redis-server (pid {server.pid})"
        f" on port {server.port}, data in {server.dir}",
        err=True,
    )
    return server


def _check_can_host(url: str, parts: SplitResult) -> None:
    where = mask_url(url)
    host = parts.hostname or ""
    if not is_loopback(host):
        raise BrokerUnreachable(
            f"no Redis answered at {where}; it is not on this machine, so none is started here:"
            " start it, or set METAWSM_BROKER_URL"
        )
    if parts.scheme != "redis":
        raise BrokerUnreachable(f"no Redis answered at {where}; a private server cannot do TLS")
    if _accepts_connections(host, parts.port or DEFAULT_REDIS_PORT):
        raise BrokerUnreachable(
            f"something listens at {where} but does not answer PING (wrong password? not Redis?)"
        )


def _accepts_connections(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=BROKER_PING_TIMEOUT_S):
            return True
    except OSError:
        return False


class Supervisor:
    """Runs the child processes, prefixes their output, and stops them all together."""

    def __init__(
        self,
        specs: list[ProcessSpec],
        out: IO[str] | None = None,
        on_ready: Callable[[float], None] | None = None,
    ) -> None:
        self.specs = specs
        self._on_ready = on_ready
        self._started_at = time.monotonic()
        self._matches: dict[str, int] = {s.name: 0 for s in specs}
        self._ready: set[str] = set()
        self._announced = False
        self._out = out or sys.stdout
        self._width = max((len(s.name) for s in specs), default=0)
        self._children: dict[str, subprocess.Popen[bytes]] = {}
        self._pumps: list[threading.Thread] = []
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._hurry = threading.Event()

    def run(self) -> str | None:
        """Run until a signal (returns None) or a child exits on its own (returns why)."""
        with self._signals_handled():
            try:
                self._start_all()
                return self._watch()
            finally:
                self._stop_all()

    @property
    def pids(self) -> dict[str, int]:
        """Process id of every started child, by name."""
        return {name: proc.pid for name, proc in self._children.items()}

    def request_stop(self) -> None:
        """Ask the supervisor to stop (a second request skips the grace period)."""
        if self._stop.is_set():
            self._hurry.set()
        self._stop.set()

    @contextmanager
    def _signals_handled(self) -> Iterator[None]:
        def handler(signum: int, _frame: FrameType | None) -> None:
            self.request_stop()

        previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)

    def _start_all(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for spec in self.specs:
            proc = subprocess.Popen(
                spec.argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                env=env,
                # Own process group: the terminal's Ctrl-C reaches only us, and we stop the
                # children in order (before the private Redis they depend on).
                start_new_session=True,
            )
            self._children[spec.name] = proc
            self._pump(spec.name, proc)
            self._say(f"started {spec.name} (pid {proc.pid}): {shlex.join(spec.argv[1:])}")

    def _pump(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        stream = proc.stdout
        assert stream is not None

        spec = next(s for s in self.specs if s.name == name)
        pattern = re.compile(spec.ready_pattern) if spec.ready_pattern else None

        def copy() -> None:
            for raw in iter(stream.readline, b""):
                line = raw.decode(errors="replace")
                self._write(prefix_line(name, self._width, line))
                if pattern is not None and pattern.search(line):
                    self._matches[name] += 1
            stream.close()

        thread = threading.Thread(target=copy, name=f"pump-{name}", daemon=True)
        thread.start()
        self._pumps.append(thread)

    def _watch(self) -> str | None:
        while not self._stop.is_set():
            for name, proc in self._children.items():
                code = proc.poll()
                if code is not None:
                    return f"process {name} (pid {proc.pid}) exited unexpectedly with code {code}"
            self._check_ready()
            self._stop.wait(WATCH_INTERVAL_S)
        return None

    def not_ready(self) -> list[str]:
        """Names of the children that have not shown they are ready yet."""
        return [s.name for s in self.specs if s.name not in self._ready]

    def _check_ready(self) -> None:
        if self._announced:
            return
        for spec in self.specs:
            if spec.name in self._ready:
                continue
            if spec.ready_pattern is not None:
                done = self._matches[spec.name] >= spec.ready_lines
            elif spec.ready_port is not None:
                done = _accepts_connections("127.0.0.1", spec.ready_port)
            else:
                done = True
            if done:
                self._ready.add(spec.name)
        if not self.not_ready():
            self._announced = True
            if self._on_ready is not None:
                with self._write_lock:
                    self._on_ready(time.monotonic() - self._started_at)

    def _stop_all(self) -> None:
        alive = {n: p for n, p in self._children.items() if p.poll() is None}
        if alive:
            self._say(f"stopping {', '.join(alive)} (SIGTERM; SIGKILL after {STOP_TIMEOUT_S:g} s)")
        for proc in alive.values():
            _signal(proc, signal.SIGTERM, group=False)
        wait_for(lambda: self._hurry.is_set() or _all_exited(alive.values()), STOP_TIMEOUT_S)
        for name, proc in self._children.items():
            if proc.poll() is None:
                self._say(f"{name} (pid {proc.pid}) did not stop in time: SIGKILL")
            # The whole group: a SIGKILLed worker leaves its pool children behind otherwise.
            _signal(proc, signal.SIGKILL, group=True)
            proc.wait()
        for thread in self._pumps:
            thread.join(PUMP_JOIN_TIMEOUT_S)

    def _write(self, line: str) -> None:
        with self._write_lock:
            self._out.write(line + "\n")
            self._out.flush()

    def _say(self, message: str) -> None:
        with self._write_lock:
            click.echo(f"up: {message}", err=True)


def _all_exited(procs: Iterable[subprocess.Popen[bytes]]) -> bool:
    return all(p.poll() is not None for p in procs)


def _signal(proc: subprocess.Popen[bytes], sig: signal.Signals, *, group: bool) -> None:
    try:
        if group:
            os.killpg(proc.pid, sig)
        elif proc.poll() is None:
            proc.send_signal(sig)
    except (ProcessLookupError, PermissionError):
        pass  # already gone


@click.command("up")
@click.option(
    "--concurrency",
    type=click.IntRange(min=1),
    default=2,
    show_default=True,
    help="Tasks the worker runs at once (its supervised solo worker processes).",
)
@click.option("--no-flower", is_flag=True, help="Do not start Flower.")
@click.option(
    "--flower-port",
    type=click.IntRange(1, 65535),
    default=5555,
    show_default=True,
    help="Flower's port (on 127.0.0.1).",
)
@click.option("--no-metrics", is_flag=True, help="Do not start the metrics exporter.")
@click.option(
    "--metrics-port",
    type=click.IntRange(1, 65535),
    default=9808,
    show_default=True,
    help="The metrics exporter's port (on 127.0.0.1): /metrics, /healthz, /readyz.",
)
@click.option("--no-api", is_flag=True, help="Do not start the HTTP API.")
@click.option(
    "--api-port",
    type=click.IntRange(1, 65535),
    default=8710,
    show_default=True,
    help="The HTTP API's port (on 127.0.0.1; docs/api.md).",
)
@pass_app
def up(
    app: AppContext,
    concurrency: int,
    no_flower: bool,
    flower_port: int,
    no_metrics: bool,
    metrics_port: int,
    no_api: bool,
    api_port: int,
) -> None:
    """Start the local stack: migrate, ensure Redis, run worker, beat and Flower until Ctrl-C.

    Also runs the metrics exporter (metawsm metrics serve) unless --no-metrics and the HTTP API
    (metawsm api) unless --no-api. Prints a ready
    summary (database, broker, Flower URL and credentials, metrics URL, what to try) once every
    process answers. Refuses (exit 1) when another metawsm up runs on the same database, when
    another stack (another database) uses the same broker and queue names, or
    Flower's, the exporter's or the API's port is taken. Exits 0 after Ctrl-C/SIGTERM, 1 when
    a process exits on its own (named), 3 when no broker or database can be reached.

    \b
    Example:
      metawsm up --concurrency 4 --no-flower
    """
    settings = app.settings
    with one_stack_per_database(settings):
        if not no_flower:
            require_free_port(flower_port, "Flower", "--flower-port or --no-flower")
        if not no_metrics:
            require_free_port(metrics_port, "metrics", "--metrics-port or --no-metrics")
        if not no_api:
            require_free_port(api_port, "API", "--api-port or --no-api")
        migrate_database(settings)
        _run_stack(
            settings,
            concurrency,
            None if no_flower else flower_port,
            None if no_metrics else metrics_port,
            None if no_api else api_port,
        )


def _run_stack(
    settings: Settings,
    concurrency: int,
    flower_port: int | None,
    metrics_port: int | None,
    api_port: int | None = None,
) -> None:
    flower = None
    if flower_port is not None:
        auth = os.environ.get(FLOWER_AUTH_ENV)
        generated = not auth
        auth = auth or f"metawsm:{secrets.token_urlsafe(12)}"
        os.environ[FLOWER_AUTH_ENV] = auth  # the Flower child reads it; never on argv
        flower = (flower_port, auth, generated)
    # The private Redis's files beside the database it serves, wherever `up` is started from.
    redis_dir = state_directory(settings.database_url) / "redis"
    private_redis = ensure_broker(settings.broker_url, redis_dir)
    how = None
    if private_redis is not None:
        how = f"private redis-server, pid {private_redis.pid}, data in {private_redis.dir}"

    def announce(seconds: float) -> None:
        for line in ready_summary(settings, seconds, how, flower, metrics_port, api_port):
            click.echo(f"up: {line}", err=True)

    specs = process_specs(concurrency, flower_port, metrics_port=metrics_port, api_port=api_port)
    try:
        # Before any worker consumes: another stack on these queues is refused (exit 1).
        with broker_claimed(settings):
            failure = Supervisor(specs, on_ready=announce).run()
    finally:
        if private_redis is not None:
            private_redis.stop()
            click.echo(
                f"up: stopped the private redis-server (port {private_redis.port})", err=True
            )
    if failure:
        raise MetawsmError(f"{failure}; stopped the other processes")
