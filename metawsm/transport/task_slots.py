"""Task slots shared between a supervised worker process and its supervisor.

A solo worker runs each task in its own main process, so nothing outside it sees a task hang.
Each supervised process gets one slot in a small shared file: it writes the monotonic time a task
started (and zero when it ends); the supervisor reads the slots to enforce the hard time limit.
The process also writes zero once when its worker is ready, so a slot written since its process
started (sequence above zero) tells the supervisor that this process got going.
Writes are a few bytes into shared memory (no system call per task); a sequence counter, odd while
a write is in progress, lets the reader discard a half-written slot instead of acting on it.
"""

from __future__ import annotations

import mmap
import os
import struct
from dataclasses import dataclass
from pathlib import Path

# Where a supervised child finds its slot: "<path>:<index>".
SLOT_ENV = "METAWSM_WATCHDOG_SLOT"
_LAYOUT = struct.Struct("<Qd")  # write sequence (odd while writing), task start (0.0 = idle)
SLOT_SIZE = 16


@dataclass(frozen=True)
class SlotState:
    """What one slot says: the start of the running task (``None`` when idle), its sequence."""

    started: float | None
    sequence: int


class SlotFile:
    """A shared file of ``count`` slots, mapped into memory."""

    def __init__(self, path: Path, count: int, *, create: bool) -> None:
        self.path = path
        self.count = count
        if create:
            path.write_bytes(b"\0" * (SLOT_SIZE * count))
        fd = os.open(path, os.O_RDWR)
        try:
            self._map = mmap.mmap(fd, SLOT_SIZE * count)
        finally:
            os.close(fd)

    def read(self, index: int) -> SlotState | None:
        """The slot's state, or ``None`` when a write was in progress (read again later)."""
        offset = index * SLOT_SIZE
        before, started = _LAYOUT.unpack_from(self._map, offset)
        after = _LAYOUT.unpack_from(self._map, offset)[0]
        if before != after or before % 2:
            return None
        return SlotState(started or None, before)

    def write(self, index: int, started: float) -> None:
        """Record that a task started at ``started`` (monotonic seconds), or ended (0.0)."""
        offset = index * SLOT_SIZE
        sequence = _LAYOUT.unpack_from(self._map, offset)[0]
        struct.pack_into("<Q", self._map, offset, sequence + 1)  # odd: write in progress
        struct.pack_into("<d", self._map, offset + 8, started)
        struct.pack_into("<Q", self._map, offset, sequence + 2)

    def written(self, index: int) -> bool:
        """True once the slot's process wrote it (its worker was ready, or ran a task), even if
        it died in the middle of a write."""
        return bool(_LAYOUT.unpack_from(self._map, index * SLOT_SIZE)[0])

    def clear(self, index: int) -> None:
        """Reset a slot before a new process takes it over."""
        self._map[index * SLOT_SIZE : (index + 1) * SLOT_SIZE] = b"\0" * SLOT_SIZE

    def close(self) -> None:
        """Unmap the file (it stays on disk)."""
        self._map.close()


def slot_from_env(value: str | None) -> tuple[SlotFile, int] | None:
    """The slot named by ``METAWSM_WATCHDOG_SLOT`` (``<path>:<index>``), if any."""
    if not value:
        return None
    path, _, index = value.rpartition(":")
    slot = int(index)
    slots = SlotFile(Path(path), slot + 1, create=False)
    return slots, slot
