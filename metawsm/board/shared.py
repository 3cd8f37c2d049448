"""One snapshot for the pages that ask at the same time.

Every open board re-reads its live part after an event, so one event brings as many requests
for the snapshot of every active run (the inbox, ``/runs``) as there are boards open, at the
same moment. :class:`Coalesced` runs one build at a time and gives each request the result of
a build that *started after the request arrived*: a page never shows a state older than its
live cursor (taken before its reads, ``live.py``), and the requests that arrive while a build
runs share the next one. Ten boards refreshing together cost two snapshots, not ten
(docs/performance.md, "The board").
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from fastapi import FastAPI, Request

from metawsm.domain.snapshot import Snapshot

T = TypeVar("T")


class Coalesced(Generic[T]):
    """Calls of ``build`` shared by the callers that arrive together (blocking: call it from a
    worker thread). A build's exception is raised in every caller that shares it."""

    def __init__(self, build: Callable[[], T]) -> None:
        self._build = build
        self._changed = threading.Condition()
        self._started = 0  # builds started so far
        self._finished = 0  # the latest build finished (its number)
        self._running = False
        self._result: T | None = None
        self._error: BaseException | None = None
        self.builds = 0  # builds run (for tests and curious operators)
        self.waiting = 0  # callers waiting for a build another caller runs

    def get(self) -> T:
        """The result of a build that started after this call began."""
        with self._changed:
            wanted = self._started + 1  # the next build to start: after this call began
            while self._finished < wanted:
                if self._running:
                    self.waiting += 1
                    self._changed.wait()
                    self.waiting -= 1
                else:
                    self._run_one()
            if self._error is not None:
                raise self._error
            return self._result  # type: ignore[return-value]

    def _run_one(self) -> None:
        """Run a build without the lock held; wake every waiting caller after."""
        self._running = True
        self._started += 1
        number = self._started
        self._changed.release()
        try:
            result, error = self._build(), None
        except BaseException as exc:  # handed to every caller of this build
            result, error = None, exc
        finally:
            self._changed.acquire()
        self._result, self._error = result, error
        self._finished, self._running = number, False
        self.builds += 1
        self._changed.notify_all()


def install(app: FastAPI) -> None:
    """Give ``app`` (the API's, its state already set) the board's two shared snapshots: of the
    active runs (the inbox) and of the active and completed runs (``/runs``)."""
    container = app.state.api.container

    def every_run(with_completed: bool) -> Callable[[], Snapshot]:
        def build() -> Snapshot:
            from metawsm.services import snapshot

            return snapshot.build(container.engine, container.settings,
                                  with_completed=with_completed)  # fmt: skip

        return build

    app.state.board_snapshots = {flag: Coalesced(every_run(flag)) for flag in (False, True)}


def every_run_snapshot(request: Request, *, with_completed: bool = False) -> Snapshot:
    """The snapshot of every active run (and the completed ones), built after this request
    arrived, shared with the requests that arrive with it (blocking: call it in a thread)."""
    shared: dict[bool, Coalesced[Snapshot]] = request.app.state.board_snapshots
    return shared[with_completed].get()
