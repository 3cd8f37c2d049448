"""What ``metawsm up`` checks before it starts (one stack per database, its ports free) and the
summary it prints once every process answers."""

from __future__ import annotations

import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.engine import make_url

from metawsm.errors import PortTaken, StackAlreadyRunning
from metawsm.settings import Settings, mask_url
from metawsm.storage.engine import build_engine, normalize_url

# pg_try_advisory_lock key of a running `metawsm up` ("up" + "stack"); the migration lock differs.
STACK_LOCK_KEY = 0x75707374
STOP_HINT = "stop it first (Ctrl-C where it runs), or set METAWSM_DATABASE_URL to another database"


@contextmanager
def one_stack_per_database(settings: Settings) -> Iterator[None]:
    """Held while ``up`` runs; a second ``up`` on the same database refuses.

    SQLite: an exclusive ``flock`` on ``<database>.up.lock`` (holding the owner's pid, for the
    message). PostgreSQL: a session advisory lock on a connection held open.

    Raises:
        StackAlreadyRunning: another ``metawsm up`` holds the lock.
    """
    url = make_url(normalize_url(settings.database_url))
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        with _file_lock(Path(str(url.database)).resolve(), settings):
            yield
        return
    if url.get_backend_name() == "postgresql":
        with _advisory_lock(settings):
            yield
        return
    yield


@contextmanager
def _file_lock(database: Path, settings: Settings) -> Iterator[None]:
    path = database.with_name(database.name + ".up.lock")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise StackAlreadyRunning(
                f"a metawsm stack already runs on {mask_url(settings.database_url)}"
                f" (metawsm up, pid {owner}; lock {path}): {STOP_HINT}"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def _advisory_lock(settings: Settings) -> Iterator[None]:
    engine = build_engine(settings, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as conn:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": STACK_LOCK_KEY})
            if not got.scalar():
                raise StackAlreadyRunning(
                    f"a metawsm stack already runs on {mask_url(settings.database_url)}"
                    f" (metawsm up holds its lock): {STOP_HINT}"
                )
            conn.commit()
            yield  # the session lock goes with the connection
    finally:
        engine.dispose()


def require_free_port(port: int, what: str, option: str) -> None:
    """Refuse when ``port`` on 127.0.0.1 is taken.

    Raises:
        PortTaken: something listens there (named, with the option that moves it).
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            raise PortTaken(
                f"port {port} on 127.0.0.1 ({what}) is taken: another metawsm stack or another"
                f" program listens there; stop it, or use {option}"
            ) from None


def ready_summary(
    settings: Settings,
    seconds: float,
    private_redis: str | None,
    flower: tuple[int, str, bool] | None,
    metrics_port: int | None = None,
    api_port: int | None = None,
) -> list[str]:
    """The lines ``up`` prints once everything answers.

    ``private_redis``: how the private server was started (None: an external Redis answered).
    ``flower``: (port, ``user:password``, whether the password was generated for this run).
    ``metrics_port``: the exporter's port (None: not started); ``api_port`` the API's.
    """
    lines = [f"ready in {seconds:.1f} s", f"  database  {mask_url(settings.database_url)}"]
    broker = mask_url(settings.broker_url)
    lines.append(f"  broker    {broker} ({private_redis or 'external: it answered'})")
    if flower is not None:
        port, auth, generated = flower
        user, _, password = auth.partition(":")
        shown = (
            f"user {user}, password {password} (generated for this run; set"
            " METAWSM_FLOWER_BASIC_AUTH=user:password to choose)"
            if generated
            else f"user {user} (password from METAWSM_FLOWER_BASIC_AUTH)"
        )
        lines.append(f"  flower    http://127.0.0.1:{port}  {shown}")
    if metrics_port is not None:
        auth = (
            "basic auth from METAWSM_METRICS_BASIC_AUTH"
            if settings.metrics_basic_auth
            else "no auth"
        )
        lines.append(
            f"  metrics   http://127.0.0.1:{metrics_port}/metrics  ({auth}; health:"
            f" /readyz, or metawsm health)"
        )
    if api_port is not None:
        lines.append(
            f"  api       http://127.0.0.1:{api_port}/api/v1/  (bearer tokens: metawsm token"
            " create; docs/api.md)"
        )
        lines.append(
            f"  board     http://127.0.0.1:{api_port}/  (sign in with a token; docs/board.md)"
        )
    lines.append("  try       metawsm demo     (a whole bootstrap story, ~20 s)")
    lines.append(
        "            metawsm forum ask --ticket T-1 --title 'Hello' --body 'first question'"
    )
    return lines
