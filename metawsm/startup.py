"""A command-line process's start-up: the cyclic garbage collector paused while the command line
and the command's modules are imported.

Importing makes tens of thousands of long-lived objects (functions, classes, their dicts), and
their allocations set off collections that look at them and free nothing (about twenty while
``status`` loads, ~2.5 ms; docs/performance.md, "Snapshot at scale", session 11). The console
entry (metawsm/entry.py) pauses the collector first thing; the command group's callback, once
the command is imported, moves everything made so far out of the collector's sight
(``gc.freeze``, as ``metawsm api`` does for its start-up heap) and resumes it, so a
long-running command collects as usual.
"""

from __future__ import annotations

import gc

_paused = [False]


def pause_collection() -> None:
    """Pause the cyclic collector for the start-up (the console entry only, not in-process
    callers such as the tests)."""
    if gc.isenabled():
        gc.disable()
        _paused[0] = True


def resume_collection() -> None:
    """Freeze what the start-up made and resume the collector, if :func:`pause_collection`
    paused it; otherwise nothing."""
    if _paused[0]:
        _paused[0] = False
        gc.freeze()
        gc.enable()
