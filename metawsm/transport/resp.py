"""A minimal Redis client (RESP2 over one socket): the few commands the publisher sends.

A command-line write publishes one message: two ``SADD`` in a ``MULTI``/``EXEC`` (the queue
binding, once per connection), an ``LPUSH`` and a ``PUBLISH``. Importing redis-py for that
costs ~100 ms of CPU per process (asyncio, its parsers, its observability hooks), this module a
few (docs/performance.md, "Command-line start-up"). It does what the publisher asked of
redis-py, and no more:

* ``redis://[[user]:password@]host[:port][/db]`` URLs (``AUTH`` and ``SELECT`` on connect). Any
  other URL (``rediss://`` TLS, query options) is not read here: :func:`parse_url` returns None
  and the caller uses redis-py;
* connect and reply timeouts, TCP keepalive and no-delay; the connection is made on the first
  command, closed after any connection error or timeout and made again by the next command
  (also in a forked child, which never writes on its parent's socket);
* a ``PING`` before the first command after ``health_check_s`` idle seconds, as redis-py's
  ``health_check_interval``: a connection a restart dropped fails before the command is sent;
* no retries: the publisher applies its own policy (one retry after a reset, none after a
  timeout).

``tests/integration/test_resp_client.py`` runs it against a real redis-server; the publisher's
wire test compares what it writes with kombu's, byte for byte.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

Arg = str | bytes | int
Reply = bytes | int | list["Reply"] | None

DEFAULT_PORT = 6379
HEALTH_CHECK_S = 10.0
_CRLF = b"\r\n"
_READ_SIZE = 65536


class ConnectionLost(ConnectionError):
    """Redis refused the connection, reset or closed it, or refused the credentials."""


class ReplyTimeout(TimeoutError):
    """Redis did not accept the connection or answer within the timeout."""


class ReplyError(Exception):
    """Redis answered a command with an error reply (``-ERR ...``); the connection stays."""


@dataclass(frozen=True)
class Address:
    """Where a Redis listens and how to log in to it."""

    host: str
    port: int
    db: int
    username: str | None
    password: str | None

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def parse_url(url: str) -> Address | None:
    """The address in a plain ``redis://`` URL; None for any URL only redis-py reads (TLS,
    query options, a user without a password, a database that is not a number)."""
    parts = urlsplit(url)
    if parts.scheme != "redis" or parts.query or parts.fragment or not parts.hostname:
        return None
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError:
        return None
    db = unquote(parts.path).strip("/") or "0"
    if not db.isdigit() or (parts.username and parts.password is None):
        return None
    username = unquote(parts.username) if parts.username else None
    password = unquote(parts.password) if parts.password is not None else None
    return Address(unquote(parts.hostname), port, int(db), username, password)


def encode(command: Sequence[Arg]) -> bytes:
    """``command`` as a RESP array of bulk strings (str as UTF-8, int in decimal)."""
    parts = [b"*%d\r\n" % len(command)]
    for arg in command:
        data = arg if isinstance(arg, bytes) else str(arg).encode("utf-8")
        parts.append(b"$%d\r\n%s\r\n" % (len(data), data))
    return b"".join(parts)


class RespClient:
    """One connection to the Redis at ``address``, made on first use.

    ``timeout_s`` bounds connecting and each wait for a reply. Not thread-safe: the publisher
    sends under its own lock. Every call raises :class:`ConnectionLost` or
    :class:`ReplyTimeout` (the connection is closed; the next call connects again) or
    :class:`ReplyError`.
    """

    def __init__(
        self, address: Address, timeout_s: float, health_check_s: float = HEALTH_CHECK_S
    ) -> None:
        self.address = address
        self._timeout_s = timeout_s
        self._health_check_s = health_check_s
        self._sock: socket.socket | None = None
        self._pid = 0
        self._buffer = bytearray()  # bytes received and not parsed yet
        self._check_after = 0.0

    def execute(self, *command: Arg) -> Reply:
        """Send one command; its reply."""
        return self._round_trip([command])[0]

    def transaction(self, commands: Sequence[Sequence[Arg]]) -> list[Reply]:
        """``MULTI``, ``commands``, ``EXEC`` in one write; the replies of ``commands``."""
        replies = self._round_trip([("MULTI",), *commands, ("EXEC",)])
        results = replies[-1]
        if not isinstance(results, list):  # EXEC answers nil when a WATCH failed: none here
            raise ReplyError(f"transaction discarded by {self.address}")
        for reply in results:
            if isinstance(reply, ReplyError):
                raise reply
        return results

    def close(self) -> None:
        """Close the connection (the next command makes a new one)."""
        sock, self._sock = self._sock, None
        self._buffer.clear()
        if sock is not None and self._pid == os.getpid():
            sock.close()

    def _round_trip(self, commands: Sequence[Sequence[Arg]]) -> list[Reply]:
        sock = self._connection()
        replies = self._exchange(sock, commands)
        for reply in replies:
            if isinstance(reply, ReplyError):
                raise reply
        return replies

    def _connection(self) -> socket.socket:
        if self._sock is not None and self._pid != os.getpid():
            self._sock = None  # a forked child: that socket is the parent's
            self._buffer.clear()
        if self._sock is None:
            self._sock = self._connect()
            self._pid = os.getpid()
        elif time.monotonic() > self._check_after:
            self._exchange(self._sock, [("PING",)])
        return self._sock

    def _connect(self) -> socket.socket:
        where = (self.address.host, self.address.port)
        try:
            sock = socket.create_connection(where, timeout=self._timeout_s)
        except TimeoutError as exc:
            raise ReplyTimeout(f"Timeout connecting to {self.address}") from exc
        except OSError as exc:
            raise ConnectionLost(
                f"Error {exc.errno} connecting to {self.address}. {exc.strerror}."
            ) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        self._buffer.clear()
        try:
            self._log_in(sock)
        except BaseException:
            sock.close()
            raise
        return sock

    def _log_in(self, sock: socket.socket) -> None:
        """AUTH and SELECT, when the URL asks for them; refused credentials are a lost
        connection, as redis-py has them."""
        address, hello = self.address, []
        if address.password is not None:
            user = (address.username,) if address.username else ()
            hello.append(("AUTH", *user, address.password))
        if address.db:
            hello.append(("SELECT", address.db))
        for command, reply in zip(hello, self._exchange(sock, hello), strict=True):
            if isinstance(reply, ReplyError):
                if command[0] == "AUTH":
                    raise ConnectionLost(f"authentication refused by {address}: {reply}")
                raise reply

    def _exchange(self, sock: socket.socket, commands: Sequence[Sequence[Arg]]) -> list[Reply]:
        """Write ``commands`` at once, read one reply each (error replies as values, so the
        stream stays in step); any connection failure closes the connection."""
        if not commands:
            return []
        try:
            sock.sendall(b"".join(encode(command) for command in commands))
            replies = [self._read_reply(sock) for _ in commands]
        except ConnectionLost:
            self._drop(sock)
            raise
        except TimeoutError as exc:
            self._drop(sock)
            raise ReplyTimeout(f"Timeout reading from {self.address}") from exc
        except OSError as exc:
            self._drop(sock)
            raise ConnectionLost(f"Error {exc.errno} with {self.address}. {exc.strerror}.") from exc
        except BaseException:
            self._drop(sock)  # interrupted mid-reply: the stream is out of step
            raise
        self._check_after = time.monotonic() + self._health_check_s
        return replies

    def _drop(self, sock: socket.socket) -> None:
        if self._sock is sock:
            self.close()
        else:
            sock.close()

    def _read_reply(self, sock: socket.socket) -> Reply:
        line = self._read_line(sock)
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest
        if kind == b"-":
            return ReplyError(rest.decode("utf-8", "replace"))  # type: ignore[return-value]
        if kind == b":":
            return int(rest)
        if kind == b"$":
            size = int(rest)
            return None if size < 0 else self._read_exact(sock, size + 2)[:-2]
        if kind == b"*":
            size = int(rest)
            return None if size < 0 else [self._read_reply(sock) for _ in range(size)]
        raise ConnectionLost(f"Protocol error with {self.address}: unexpected {line[:40]!r}")

    def _read_line(self, sock: socket.socket) -> bytes:
        while (end := self._buffer.find(_CRLF)) < 0:
            self._receive(sock)
        line = bytes(self._buffer[:end])
        del self._buffer[: end + 2]
        return line

    def _read_exact(self, sock: socket.socket, size: int) -> bytes:
        while len(self._buffer) < size:
            self._receive(sock)
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def _receive(self, sock: socket.socket) -> None:
        chunk = sock.recv(_READ_SIZE)
        if not chunk:
            raise ConnectionLost(f"Connection closed by server ({self.address})")
        self._buffer += chunk
