"""The faults a private Redis can be put through: freeze, restart, flush.

Shared by the fault tests (``tests/fixtures/redis.py``) and the incident drills
(``metawsm drill``, :mod:`metawsm.drills.faults`), so both inject exactly the same fault.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import redis

from metawsm.errors import BrokerUnreachable
from metawsm.transport.redis_server import STOP_TIMEOUT_S, RedisServer, wait_for

SIGNAL_TIMEOUT_S = 5.0


def process_state(pid: int) -> str | None:
    """The one-letter state of ``pid`` from ``/proc`` (``T`` stopped), None when it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()  # the name may hold spaces and ')'
    return fields[0] if fields else None


class ControlledRedisServer(RedisServer):
    """A :class:`RedisServer` that can also be frozen, restarted and flushed."""

    _paused = False

    @property
    def is_paused(self) -> bool:
        """True between :meth:`pause` and :meth:`resume` (the process is SIGSTOPped)."""
        return self._paused and self.is_running()

    def start(self) -> None:
        """Start the server (as :meth:`RedisServer.start`); a new process is never paused."""
        self._paused = False
        super().start()

    def stop(self, timeout_s: float = STOP_TIMEOUT_S) -> None:
        """Stop the server (as :meth:`RedisServer.stop`), continuing it first if paused: a
        stopped process only acts on SIGTERM once it runs again."""
        if self.is_paused:
            self.resume()
        super().stop(timeout_s)

    def pause(self) -> None:
        """Freeze the server with SIGSTOP: connections stay open but nothing answers.

        Raises:
            BrokerUnreachable: the server is not running, or did not stop within
                ``SIGNAL_TIMEOUT_S`` seconds.
        """
        pid = self._require_pid()
        os.kill(pid, signal.SIGSTOP)
        self._paused = True
        self._await_state(pid, lambda state: state in ("T", None), "stop")

    def resume(self) -> None:
        """Continue a paused server with SIGCONT.

        Raises:
            BrokerUnreachable: the server is not running, or did not continue in time.
        """
        pid = self._require_pid()
        os.kill(pid, signal.SIGCONT)
        self._paused = False
        self._await_state(pid, lambda state: state != "T", "continue")

    def restart(self) -> None:
        """Stop (if running) and start again on the same port and data directory."""
        self.stop()
        self.start()

    def flushall(self) -> None:
        """Delete every key in every database of this server."""
        client = redis.Redis.from_url(self.url, socket_timeout=SIGNAL_TIMEOUT_S)
        try:
            client.flushall()
        finally:
            client.close()

    def key_count(self) -> int:
        """Keys in database 0 (queues, unacked bookkeeping, bindings): what a flush deletes."""
        client = redis.Redis.from_url(self.url, socket_timeout=SIGNAL_TIMEOUT_S)
        try:
            return int(client.dbsize())
        finally:
            client.close()

    def queued(self, names: list[str]) -> int:
        """Messages waiting in the lists ``names`` (kombu's Redis queues)."""
        client = redis.Redis.from_url(self.url, socket_timeout=SIGNAL_TIMEOUT_S)
        try:
            return sum(int(client.llen(name)) for name in names)
        finally:
            client.close()

    def _await_state(self, pid: int, wanted: Callable[[str | None], bool], what: str) -> None:
        def reached() -> bool:
            return wanted(process_state(pid))

        if not wait_for(reached, SIGNAL_TIMEOUT_S):
            raise BrokerUnreachable(
                f"redis-server (pid {pid}) did not {what} within {SIGNAL_TIMEOUT_S:g} s"
            )

    def _require_pid(self) -> int:
        pid = self.pid
        if pid is None:
            raise BrokerUnreachable(f"redis-server on port {self.port} is not running")
        return pid
