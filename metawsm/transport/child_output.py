"""What a supervised worker prints before it is ready, seen by its supervisor.

A worker that cannot start (an import error, bad settings) prints why and exits; its supervisor
names that cause when it gives up. So each child starts with its stdout and stderr on a pipe the
supervisor reads (:class:`StartupOutput`): it forwards the bytes to its own stderr as they come
and keeps the last few kilobytes. Once the worker is ready, it puts the supervisor's own stdout
and stderr back in place (:func:`restore_output`; passed to it as open descriptors named by
``METAWSM_WATCHDOG_OUTPUT``), which closes the pipe: a running worker writes its log directly,
as an unsupervised one does, with no copy through the supervisor.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from contextlib import suppress

# Where a supervised child finds the supervisor's stdout and stderr: "<fd>,<fd>".
OUTPUT_ENV = "METAWSM_WATCHDOG_OUTPUT"
TAIL_BYTES = 4096
TAIL_LINES = 20
_READ_BYTES = 65536


def saved_output() -> tuple[int, int] | None:
    """Copies of this process's stdout and stderr for the children to write to once ready;
    ``None`` when either is closed (the children then inherit them from the start)."""
    try:
        out = os.dup(1)
    except OSError:
        return None
    try:
        return out, os.dup(2)
    except OSError:
        os.close(out)
        return None


def spawn(
    argv: list[str],
    env: dict[str, str],
    own_output: tuple[int, int] | None,
    preexec_fn: Callable[[], None] | None,
) -> tuple[subprocess.Popen[bytes], StartupOutput | None]:
    """Start a child whose output comes to us on a pipe until it is ready (``own_output``, from
    :func:`saved_output`, is where it writes then); without ``own_output``, it inherits ours."""
    if own_output is None:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, env=env, preexec_fn=preexec_fn)
        return proc, None
    read, write = os.pipe()
    try:
        proc = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=write,
            stderr=write,
            pass_fds=own_output,
            env={**env, OUTPUT_ENV: f"{own_output[0]},{own_output[1]}"},
            preexec_fn=preexec_fn,
        )
    except BaseException:
        os.close(read)
        raise
    finally:
        os.close(write)  # the child holds the only write ends: its exit or restore is our EOF
    return proc, StartupOutput(read, sink=own_output[1])


def exit_text(code: int) -> str:
    """How a child ended, from its return code: ``exited with 3``, ``was killed by SIGKILL``."""
    if code >= 0:
        return f"exited with {code}"
    try:
        return f"was killed by {signal.Signals(-code).name}"
    except ValueError:
        return f"was killed by signal {-code}"


class StartupOutput:
    """The read end of one child's output pipe: forwarded to ``sink``, its tail kept."""

    def __init__(self, fd: int, sink: int) -> None:
        os.set_blocking(fd, False)
        self._fd: int | None = fd
        self._sink = sink
        self._tail = b""

    @property
    def open(self) -> bool:
        """True until the child closed its end (it is ready, or gone) and it was read out."""
        return self._fd is not None

    def pump(self) -> None:
        """Forward what the child printed since the last call; close the pipe at its end."""
        while self._fd is not None:
            try:
                chunk = os.read(self._fd, _READ_BYTES)
            except BlockingIOError:
                return
            if not chunk:
                self.close()
                return
            self._tail = (self._tail + chunk)[-TAIL_BYTES:]
            _write_all(self._sink, chunk)

    def tail(self) -> str:
        """The last lines the child printed (at most TAIL_LINES lines, TAIL_BYTES bytes)."""
        text = self._tail.decode(errors="replace").rstrip("\n")
        return "\n".join(text.splitlines()[-TAIL_LINES:])

    def close(self) -> None:
        """Stop reading (the child's further writes to the pipe fail)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _write_all(fd: int, data: bytes) -> None:
    with suppress(OSError):  # our own stderr is gone: the tail is still kept for the log
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]


def restore_output(value: str | None) -> None:
    """In a supervised worker that is ready: write to the supervisor's stdout and stderr again
    (``value`` is ``METAWSM_WATCHDOG_OUTPUT``; nothing to do without it)."""
    if not value:
        return
    out, _, err = value.partition(",")
    for stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__):
        if stream is not None:
            with suppress(OSError, ValueError):
                stream.flush()
    for saved, target in ((int(out), 1), (int(err), 2)):
        os.dup2(saved, target)
        os.close(saved)
