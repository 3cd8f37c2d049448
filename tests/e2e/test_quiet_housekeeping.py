"""Housekeeping stays out of sight: beat's drain, reconciliation and SLA tasks send no task events
(Flower's task list) and no INFO lines, while the work they do is still done and logged.

A real beat and a real solo worker at INFO run with every housekeeping interval shortened to a
fraction of a second, next to a Celery event receiver (what Flower listens to).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from contextlib import suppress
from pathlib import Path
from typing import Any

from metawsm.bootstrap import build
from metawsm.services.submit import make_command, submit
from metawsm.settings import Settings
from metawsm.transport.queues import HOUSEKEEPING_TASKS
from tests.fixtures.conditions import wait_until
from tests.fixtures.database import settings_for
from tests.fixtures.pipeline import accept_only, all_final
from tests.fixtures.redis import ControlledRedisServer
from tests.fixtures.workers import client_app, subprocess_worker, worker_environment

# Every job several times a second, so each runs while the test watches.
FAST = {"drain_interval_s": 0.3, "escalate_interval_s": 0.3, "outbox_redrive_age_s": 0.6}


def _open_thread(thread_id: str) -> Any:
    payload = {"thread_id": thread_id, "ticket": "TCK-1", "title": "T", "body": "b"}
    return make_command("open_thread", payload, actor_type="agent", actor_name="agent-1")


def test_housekeeping_sends_no_task_events_and_logs_only_what_it_did(
    db_url: str, private_redis: ControlledRedisServer, tmp_path: Path
) -> None:
    settings: Settings = settings_for(db_url, broker_url=private_redis.url, **FAST)
    c = build(settings)
    monitor = client_app(settings)
    named: dict[str, str] = {}  # task id -> task name, from task-sent / task-received events
    with monitor.connection_for_read() as conn:
        receiver = monitor.events.Receiver(conn, handlers={"*": _names(named)})
        listener = threading.Thread(
            target=receiver.capture, kwargs={"limit": None, "wakeup": False}, daemon=True
        )
        listener.start()
        beat = _start_beat(settings, tmp_path / "beat")
        try:
            with subprocess_worker(
                settings, tmp_path / "worker", concurrency=1, pool="solo", loglevel="INFO"
            ) as worker:
                # A forum command shows in monitoring: the receiver hears the worker.
                seen = _open_thread("t-seen")
                submit(c.runtime, seen)
                wait_until(lambda: seen.command_id in named, 60, "the forum task's events")
                # A command nobody published: only the drain or reconciliation can get it applied.
                stranded = _open_thread("t-stranded")
                accept_only(c.runtime, stranded)
                wait_until(
                    lambda: all_final(c.runtime.engine, [stranded.command_id]), 30, "the drain"
                )
                # The same worker reports in order: once a later forum task is heard, whatever
                # it reported of the drain before has been heard too.
                later = _open_thread("t-later")
                submit(c.runtime, later)
                wait_until(lambda: later.command_id in named, 30, "the later task's events")
                assert beat.poll() is None, "beat exited"
                worker_log = worker.log_path.read_text(errors="replace")
        finally:
            _stop(beat)
            receiver.should_stop = True
            listener.join(10)
            monitor.close()
            c.close()
    beat_log = (tmp_path / "beat" / "beat.log").read_text(errors="replace")
    housekeeping = {i: n for i, n in named.items() if n in HOUSEKEEPING_TASKS}
    assert not housekeeping, (
        f"housekeeping tasks in monitoring: {sorted(set(housekeeping.values()))}"
    )
    for name, text in (("worker", worker_log), ("beat", beat_log)):
        # Celery names a task run "name[id]" (worker) or "(name)" (beat); its banner lists the
        # task names alone.
        runs = [m for t in HOUSEKEEPING_TASKS for m in (f"{t}[", f"({t})")]
        noisy = [ln for ln in text.splitlines() if any(m in ln for m in runs)]
        assert not noisy, f"{name} logs housekeeping runs at INFO: {noisy[:3]}"
    # What the housekeeping did (re-drive and publish the stranded command) is logged at INFO.
    assert re.search(r"INFO.*outbox (drain|reconciliation): .*\b1 published", worker_log), (
        worker_log[-2000:]
    )


def _names(named: dict[str, str]) -> Any:
    def on_event(event: dict[str, Any]) -> None:
        if str(event.get("type", "")) in ("task-sent", "task-received") and event.get("name"):
            named[str(event.get("uuid"))] = str(event["name"])

    return on_event


def _start_beat(settings: Settings, cwd: Path) -> subprocess.Popen[bytes]:
    cwd.mkdir(parents=True, exist_ok=True)
    with (cwd / "beat.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "metawsm", "beat", "--loglevel", "INFO"],
            env=worker_environment(settings),
            cwd=cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )


def _stop(proc: subprocess.Popen[bytes]) -> None:
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=10)
    with suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
