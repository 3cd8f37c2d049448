"""The worker supervisor (``metawsm.transport.worker_supervisor``) and its task slots.

The supervisor runs real child processes: small ``python -c`` programs that leave files in a
directory (``pid-<pid>`` when started, ``stopped-<pid>`` on SIGTERM, ``slot-<pid>`` with the
``METAWSM_WATCHDOG_SLOT`` they were given) and, to simulate a task, write its start time into
their slot. ``pool.run()`` runs in the test's main thread (it installs signal handlers); an
observer thread waits for conditions with a deadline, records what it saw and always ends with
``pool.request_stop()``; the test asserts once ``run()`` has returned.
"""

from __future__ import annotations

import logging
import os
import signal
import struct
import sys
import threading
import time
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path
from typing import Any

import pytest

from metawsm.transport import worker_supervisor
from metawsm.transport.task_slots import SLOT_SIZE, SlotFile, SlotState, slot_from_env
from metawsm.transport.worker_supervisor import WorkerSupervisor
from tests.fixtures.conditions import process_stat

POLL_S = 0.02
WAIT_S = 8.0  # any single condition; each test normally takes well under 3 s
BACKSTOP_S = 20.0  # the observer thread hung: stop the pool regardless
HARD_LIMIT_S = 0.5

# Shared start of every fake worker: argv is <dir> <index>. The SIGTERM handler is installed
# before the pid file is written, so once the test sees the pid file a SIGTERM is handled.
PROLOGUE = """
import os, signal, sys, time
d, index, pid = sys.argv[1], int(sys.argv[2]), os.getpid()

def put(name, text=""):
    tmp = os.path.join(d, "." + name)
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, os.path.join(d, name))

def on_term(signum, frame):
    put(f"stopped-{pid}")
    os._exit(0)

signal.signal(signal.SIGTERM, on_term)
put(f"slot-{pid}", os.environ.get("METAWSM_WATCHDOG_SLOT", ""))
put(f"env-{pid}", os.environ.get("SOLO_POOL_TEST_MARK", ""))
put(f"pid-{pid}", str(index))
"""

SLOT = """
from metawsm.transport.task_slots import slot_from_env
slots, slot = slot_from_env(os.environ["METAWSM_WATCHDOG_SLOT"])
"""

SLEEP_FOREVER = """
while True:
    time.sleep(60)
"""

# The first process to start runs a task that never ends; its replacement stays idle.
HUNG_ONCE = (
    PROLOGUE
    + SLOT
    + """
try:
    fd = os.open(os.path.join(d, "hung-once"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
except FileExistsError:
    pass
else:
    os.close(fd)
    started = time.monotonic()
    slots.write(slot, started)
    put(f"task-{pid}", repr(started))
"""
    + SLEEP_FOREVER
)
IDLE_SILENT = PROLOGUE + SLEEP_FOREVER
IDLE_ZERO = PROLOGUE + SLOT + "slots.write(slot, 0.0)\n" + SLEEP_FOREVER
TASK_FINISHES = (
    PROLOGUE
    + SLOT
    + """
slots.write(slot, time.monotonic())
time.sleep(float(os.environ["SOLO_POOL_TEST_TASK_S"]))
slots.write(slot, 0.0)
put(f"done-{pid}")
"""
    + SLEEP_FOREVER
)
EXIT_AT_ONCE = PROLOGUE + "sys.exit(3)\n"
CRASH_LATER = PROLOGUE + "time.sleep(0.5)\nsys.exit(1)\n"
# What a worker that cannot start does: print a lot, then the reason, and exit.
CANNOT_IMPORT = (
    PROLOGUE
    + """
for line in range(60):
    print(f"starting, step {line}", flush=True)
import metawsm_no_such_module
"""
)
KILLED_WHILE_STARTING = PROLOGUE + "os.kill(pid, signal.SIGKILL)\n"
# A worker that got going: it ran a task (wrote its start, then idle), or only said it is
# ready (idle; what a real worker writes on Celery's worker_ready). Then it idles until killed.
CONSUMED = (
    PROLOGUE
    + SLOT
    + """
slots.write(slot, time.monotonic())
slots.write(slot, 0.0)
put(f"going-{pid}")
"""
    + SLEEP_FOREVER
)
READY = (
    PROLOGUE
    + SLOT
    + """
slots.write(slot, 0.0)
put(f"going-{pid}")
"""
    + SLEEP_FOREVER
)


# ---------------------------------------------------------------- helpers


def argv_for(script: str, directory: Path) -> Callable[[int], list[str]]:
    return lambda index: [sys.executable, "-c", script, str(directory), str(index)]


def wait_until(
    predicate: Callable[[], Any],
    what: str,
    timeout_s: float = WAIT_S,
    abort: threading.Event | None = None,
) -> Any:
    """Poll ``predicate`` every 20 ms until it is truthy (returned); fail after ``timeout_s``,
    or at once when ``abort`` is set (``run()`` returned while we were waiting)."""
    deadline = time.monotonic() + timeout_s
    pause = abort if abort is not None else threading.Event()
    while True:
        value = predicate()
        if value:
            return value
        if abort is not None and abort.is_set():
            raise AssertionError(f"run() returned while waiting for {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:g} s waiting for {what}")
        pause.wait(POLL_S)


def started(directory: Path) -> list[int]:
    """Pids of the fake workers started so far, in no particular order."""
    return [int(p.name.removeprefix("pid-")) for p in directory.glob("pid-*")]


def has(directory: Path, name: str) -> bool:
    return (directory / name).exists()


def proc_state(pid: int) -> str | None:
    """The process's state letter from /proc (``Z`` for a zombie), ``None`` when it is gone."""
    fields = process_stat(pid)
    return fields[0] if fields else None


def is_running(pid: int) -> bool:
    return proc_state(pid) not in (None, "Z", "X")


def is_gone(pid: int) -> bool:
    """Exited and reaped: ``kill(pid, 0)`` no longer finds it."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def outlive_three_hard_limits(
    directory: Path, pid: int, since: float, done: threading.Event, limit_s: float = HARD_LIMIT_S
) -> None:
    """Wait (polling the clock) until 3 hard limits have passed since ``since``; stop early when
    the child was killed or replaced, which the test then reports."""
    wait_until(
        lambda: (
            time.monotonic() - since > 3 * limit_s
            or len(started(directory)) > 1
            or not is_running(pid)
        ),
        "three hard limits to pass",
        abort=done,
    )


def supervise(pool: WorkerSupervisor, observe: Callable[[threading.Event], None]) -> int:
    """Run ``pool.run()`` in this (the main) thread while ``observe(done)`` runs in a thread;
    ``done`` is set when run() returns. The observer always ends with ``request_stop()``; a
    backstop thread stops the pool after BACKSTOP_S, then SIGKILLs its children, so a broken
    supervisor fails the test instead of hanging the suite. Re-raises the observer's failure."""
    done = threading.Event()
    failures: list[BaseException] = []

    def observer() -> None:
        try:
            observe(done)
        except BaseException as exc:
            failures.append(exc)
        finally:
            pool.request_stop()

    def backstop() -> None:
        if done.wait(BACKSTOP_S):
            return
        failures.append(AssertionError(f"run() still running after {BACKSTOP_S:g} s"))
        pool.request_stop()
        if done.wait(5.0):
            return
        for pid in pool.pids:
            with suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    threads = [
        threading.Thread(target=observer, name="observer", daemon=True),
        threading.Thread(target=backstop, name="backstop", daemon=True),
    ]
    for thread in threads:
        thread.start()
    try:
        code = pool.run()
    finally:
        done.set()
        for thread in threads:
            thread.join(10.0)
    if failures:
        raise failures[0]
    return code


def messages(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "metawsm.transport.worker_supervisor" and r.levelno == level
    ]


@pytest.fixture
def caplog_pool(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="metawsm.transport.worker_supervisor")
    return caplog


# ---------------------------------------------------------------- hard time limit


def test_a_task_past_the_hard_limit_gets_its_process_killed_and_replaced(
    tmp_path: Path, caplog_pool: pytest.LogCaptureFixture
) -> None:
    pool = WorkerSupervisor(argv_for(HUNG_ONCE, tmp_path), 1, HARD_LIMIT_S)
    seen: dict[str, Any] = {}

    def observe(done: threading.Event) -> None:
        [first] = wait_until(lambda: started(tmp_path), "the first start", abort=done)
        seen["first"] = first
        wait_until(lambda: has(tmp_path, f"task-{first}"), "the hung task", abort=done)
        task_started = float((tmp_path / f"task-{first}").read_text())
        wait_until(lambda: not is_running(first), "the hung one to die", abort=done)
        seen["died_after_s"] = time.monotonic() - task_started  # an upper bound
        seen["others"] = wait_until(
            lambda: [p for p in started(tmp_path) if p != first], "a replacement", abort=done
        )
        seen["first_gone"] = wait_until(lambda: is_gone(first), "the killed one reaped")
        [second] = seen["others"]
        seen["second_running"] = is_running(second)

    assert supervise(pool, observe) == 0
    first = seen["first"]
    assert len(seen["others"]) == 1, "exactly one replacement"
    assert seen["first_gone"]
    assert seen["second_running"], "the replacement (idle) is left alone"
    assert seen["died_after_s"] > HARD_LIMIT_S, "not killed before the limit"
    assert not has(tmp_path, f"stopped-{first}"), "SIGKILLed, not asked to stop with SIGTERM"
    assert has(tmp_path, f"stopped-{seen['others'][0]}"), "the replacement got the SIGTERM"
    errors = messages(caplog_pool, logging.ERROR)
    assert len(errors) == 1, errors
    assert "past the hard time limit" in errors[0]
    assert f"pid {first}" in errors[0]


@pytest.mark.parametrize("script", [IDLE_SILENT, IDLE_ZERO], ids=["slot-untouched", "slot-zero"])
def test_an_idle_worker_is_never_killed(
    tmp_path: Path, caplog_pool: pytest.LogCaptureFixture, script: str
) -> None:
    pool = WorkerSupervisor(argv_for(script, tmp_path), 1, HARD_LIMIT_S)
    seen: dict[str, Any] = {}

    def observe(done: threading.Event) -> None:
        [pid] = wait_until(lambda: started(tmp_path), "the start", abort=done)
        since = time.monotonic()
        outlive_three_hard_limits(tmp_path, pid, since, done)
        seen.update(pid=pid, pids=started(tmp_path), running=is_running(pid))

    assert supervise(pool, observe) == 0
    assert seen["pids"] == [seen["pid"]], "not restarted"
    assert seen["running"]
    assert messages(caplog_pool, logging.ERROR) == []


def test_a_task_that_finished_does_not_get_its_process_killed(
    tmp_path: Path, caplog_pool: pytest.LogCaptureFixture
) -> None:
    # The task runs longer than a supervisor tick (0.25 s), so the supervisor sees it running,
    # and well below the hard limit; then the slot says idle again.
    limit_s = 0.8
    env = {**os.environ, "SOLO_POOL_TEST_TASK_S": "0.35"}
    pool = WorkerSupervisor(argv_for(TASK_FINISHES, tmp_path), 1, limit_s, env=env)
    seen: dict[str, Any] = {}

    def observe(done: threading.Event) -> None:
        [pid] = wait_until(lambda: started(tmp_path), "the start", abort=done)
        since = time.monotonic()
        wait_until(lambda: has(tmp_path, f"done-{pid}"), "the task to finish", abort=done)
        outlive_three_hard_limits(tmp_path, pid, since, done, limit_s)
        seen.update(pid=pid, pids=started(tmp_path), running=is_running(pid))

    assert supervise(pool, observe) == 0
    assert seen["pids"] == [seen["pid"]], "not restarted"
    assert seen["running"]
    assert messages(caplog_pool, logging.ERROR) == []


# ---------------------------------------------------------------- stopping, slots per child


def test_request_stop_sends_sigterm_waits_and_removes_the_slot_directory(tmp_path: Path) -> None:
    pool = WorkerSupervisor(argv_for(IDLE_SILENT, tmp_path), 1, HARD_LIMIT_S)
    seen: dict[str, Any] = {}

    def observe(done: threading.Event) -> None:
        [pid] = wait_until(lambda: started(tmp_path), "the start", abort=done)
        slot_env = (tmp_path / f"slot-{pid}").read_text()
        seen.update(pid=pid, slot_env=slot_env, slot_file=Path(slot_env.rpartition(":")[0]))
        seen["slot_file_existed"] = seen["slot_file"].is_file()
        # the finally of supervise's observer sends request_stop()

    assert supervise(pool, observe) == 0
    pid = seen["pid"]
    assert seen["slot_env"].endswith(":0")
    assert seen["slot_file_existed"]
    assert has(tmp_path, f"stopped-{pid}"), "the child got SIGTERM (warm shutdown)"
    assert is_gone(pid), "run() waited for the child and reaped it"
    assert pool.pids == []
    assert not seen["slot_file"].exists()
    assert not seen["slot_file"].parent.exists(), "the temporary slot directory is removed"


def test_each_child_gets_its_own_slot_index_and_the_given_environment(tmp_path: Path) -> None:
    env = {**os.environ, "SOLO_POOL_TEST_MARK": "from-the-supervisor"}
    pool = WorkerSupervisor(argv_for(IDLE_SILENT, tmp_path), 2, HARD_LIMIT_S, env=env)
    seen: dict[str, Any] = {}

    def observe(done: threading.Event) -> None:
        pids = wait_until(lambda: len(started(tmp_path)) == 2 and started(tmp_path), "2 starts")
        seen["children"] = {
            pid: (
                int((tmp_path / f"pid-{pid}").read_text()),  # argv_for(index)
                (tmp_path / f"slot-{pid}").read_text(),
                (tmp_path / f"env-{pid}").read_text(),
            )
            for pid in pids
        }
        seen["live"] = sorted(pool.pids)

    assert supervise(pool, observe) == 0
    children = seen["children"]
    assert seen["live"] == sorted(children)
    by_index = {index: (slot, mark) for index, slot, mark in children.values()}
    assert sorted(by_index) == [0, 1]
    paths = set()
    for index, (slot, mark) in by_index.items():
        path, _, slot_index = slot.rpartition(":")
        assert slot_index == str(index), "the slot index is the argv_for index"
        assert mark == "from-the-supervisor"
        paths.add(path)
    assert len(paths) == 1, "one shared slot file"
    assert all(has(tmp_path, f"stopped-{pid}") for pid in children)
    assert not Path(paths.pop()).parent.exists()


# ---------------------------------------------------------------- restarts


def test_a_child_that_keeps_failing_at_start_makes_run_give_up(
    tmp_path: Path, caplog_pool: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_supervisor, "START_FAILURES_LIMIT", 3)
    monkeypatch.setattr(worker_supervisor, "RESTART_BACKOFF_MAX_S", 0.1)
    pool = WorkerSupervisor(argv_for(EXIT_AT_ONCE, tmp_path), 1, HARD_LIMIT_S)

    def observe(done: threading.Event) -> None:
        wait_until(done.is_set, "run() to give up")

    assert supervise(pool, observe) == 1
    pids = started(tmp_path)
    assert len(pids) == 3, pids
    assert not any(has(tmp_path, f"stopped-{pid}") for pid in pids)
    warnings = messages(caplog_pool, logging.WARNING)
    assert len(warnings) == 3, warnings
    assert all("exited with 3" in w for w in warnings)
    [error] = messages(caplog_pool, logging.ERROR)
    assert "giving up" in error
    slot_file = Path((tmp_path / f"slot-{pids[0]}").read_text().rpartition(":")[0])
    assert not slot_file.parent.exists()


def test_a_child_that_crashes_after_the_start_grace_is_restarted_without_giving_up(
    tmp_path: Path, caplog_pool: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_supervisor, "START_GRACE_S", 0.2)
    # Were these crashes counted as start failures, run() would give up at the second.
    monkeypatch.setattr(worker_supervisor, "START_FAILURES_LIMIT", 2)
    monkeypatch.setattr(worker_supervisor, "RESTART_BACKOFF_MAX_S", 0.1)
    pool = WorkerSupervisor(argv_for(CRASH_LATER, tmp_path), 1, HARD_LIMIT_S)
    seen: dict[str, Any] = {}

    def observe(done: threading.Event) -> None:
        wait_until(lambda: len(started(tmp_path)) >= 3, "3 starts", abort=done)
        seen["starts"] = len(started(tmp_path))

    assert supervise(pool, observe) == 0
    assert seen["starts"] >= 3
    warnings = messages(caplog_pool, logging.WARNING)
    assert len(warnings) >= 2 and all("exited with 1" in w for w in warnings), warnings
    assert not any("giving up" in m for m in messages(caplog_pool, logging.ERROR))


@pytest.mark.parametrize("script", [CONSUMED, READY], ids=["ran-a-task", "ready"])
def test_children_killed_soon_after_they_got_going_are_restarted_without_giving_up(
    tmp_path: Path,
    caplog_pool: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    script: str,
) -> None:
    """Each child writes its slot (it got going), then is SIGKILLed well within the start grace
    (10 s): killed from outside while working, not a failure to start."""
    monkeypatch.setattr(worker_supervisor, "START_FAILURES_LIMIT", 3)
    kills = worker_supervisor.START_FAILURES_LIMIT + 2
    pool = WorkerSupervisor(argv_for(script, tmp_path), 1, HARD_LIMIT_S)
    seen: dict[str, Any] = {"killed": []}

    def kill_when_going(pid: int, done: threading.Event) -> None:
        wait_until(lambda: has(tmp_path, f"going-{pid}"), "its slot written", abort=done)
        os.kill(pid, signal.SIGKILL)
        seen["killed"].append(pid)
        wait_until(lambda: is_gone(pid), "the killed child reaped", abort=done)

    def observe(done: threading.Event) -> None:
        for _ in range(kills + 1):
            fresh = wait_until(
                lambda: [p for p in started(tmp_path) if p not in seen["killed"]],
                "a (re)started child",
                abort=done,
            )
            seen["replacements"] = fresh
            if len(seen["killed"]) < kills:
                kill_when_going(fresh[0], done)

    assert supervise(pool, observe) == 0, "run() returned on its own"
    assert len(seen["killed"]) == kills
    assert len(seen["replacements"]) == 1, "one child at a time"
    warnings = messages(caplog_pool, logging.WARNING)
    assert len(warnings) == kills, warnings
    assert all("was killed by SIGKILL after it was ready" in w for w in warnings), warnings
    assert all("restarting it now" in w for w in warnings), warnings
    assert not any("giving up" in m for m in messages(caplog_pool, logging.ERROR))


def test_a_child_that_cannot_start_makes_run_give_up_naming_its_exit_code_and_last_output(
    tmp_path: Path, caplog_pool: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(worker_supervisor, "START_FAILURES_LIMIT", 2)
    monkeypatch.setattr(worker_supervisor, "RESTART_BACKOFF_MAX_S", 0.1)
    pool = WorkerSupervisor(argv_for(CANNOT_IMPORT, tmp_path), 1, HARD_LIMIT_S)

    def observe(done: threading.Event) -> None:
        wait_until(done.is_set, "run() to give up")

    assert supervise(pool, observe) == 1
    assert len(started(tmp_path)) == 2
    [error] = messages(caplog_pool, logging.ERROR)
    assert "solo worker 0 cannot start" in error
    assert "giving up" in error
    assert "exited with 1" in error
    assert "ModuleNotFoundError: No module named 'metawsm_no_such_module'" in error
    assert "starting, step 59" in error, "the tail of what it printed"
    assert "starting, step 0\n" not in error, "only the tail"


def test_a_child_killed_before_it_was_ready_is_restarted_at_once_and_never_given_up_on(
    tmp_path: Path, caplog_pool: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL comes from outside (the OOM killer, an operator): it says nothing about whether
    the child can start, and backing off would starve the role while the kills go on."""
    monkeypatch.setattr(worker_supervisor, "START_FAILURES_LIMIT", 2)
    pool = WorkerSupervisor(argv_for(KILLED_WHILE_STARTING, tmp_path), 1, HARD_LIMIT_S)
    seen: dict[str, Any] = {}

    def observe(done: threading.Event) -> None:
        wait_until(lambda: len(started(tmp_path)) >= 4, "4 starts", abort=done)
        seen["starts"] = len(started(tmp_path))

    assert supervise(pool, observe) == 0
    assert seen["starts"] >= 4
    warnings = messages(caplog_pool, logging.WARNING)
    assert len(warnings) >= 3, warnings
    assert all("was killed by SIGKILL before it was ready" in w for w in warnings), warnings
    assert all("restarting it now" in w for w in warnings), warnings
    assert not any("giving up" in m for m in messages(caplog_pool, logging.ERROR))


# ---------------------------------------------------------------- SlotFile


def test_slots_start_idle_and_round_trip_a_task_start(tmp_path: Path) -> None:
    slots = SlotFile(tmp_path / "slots", 3, create=True)
    try:
        assert (tmp_path / "slots").stat().st_size == 3 * SLOT_SIZE
        assert [slots.read(i) for i in range(3)] == [SlotState(None, 0)] * 3
        slots.write(1, 1234.5)
        assert slots.read(1) == SlotState(1234.5, 2)
        assert slots.read(0) == slots.read(2) == SlotState(None, 0), "neighbours untouched"
        slots.write(1, 0.0)
        assert slots.read(1) == SlotState(None, 4), "0.0 is idle; the sequence moves on"
        slots.write(1, 99.0)
        slots.clear(1)
        assert slots.read(1) == SlotState(None, 0)
    finally:
        slots.close()


def test_a_slot_being_written_reads_as_none(tmp_path: Path) -> None:
    slots = SlotFile(tmp_path / "slots", 2, create=True)
    writer = SlotFile(tmp_path / "slots", 2, create=False)
    try:
        slots.write(1, 50.0)
        struct.pack_into("<Q", writer._map, SLOT_SIZE, 3)  # odd: a write in progress
        assert slots.read(1) is None
        assert slots.read(0) == SlotState(None, 0)
        struct.pack_into("<Q", writer._map, SLOT_SIZE, 4)
        assert slots.read(1) == SlotState(50.0, 4)
    finally:
        writer.close()
        slots.close()


def test_two_mappings_of_one_slot_file_see_each_others_writes(tmp_path: Path) -> None:
    a = SlotFile(tmp_path / "slots", 2, create=True)
    b = SlotFile(tmp_path / "slots", 2, create=False)
    try:
        a.write(0, 10.0)
        assert b.read(0) == SlotState(10.0, 2)
        b.write(1, 20.0)
        assert a.read(1) == SlotState(20.0, 2)
        a.clear(0)
        assert b.read(0) == SlotState(None, 0)
    finally:
        b.close()
        a.close()


def test_slot_from_env_parses_path_and_index(tmp_path: Path) -> None:
    assert slot_from_env(None) is None
    assert slot_from_env("") is None
    owner = SlotFile(tmp_path / "slots", 2, create=True)
    found = slot_from_env(f"{tmp_path / 'slots'}:1")
    assert found is not None
    slots, index = found
    try:
        assert index == 1
        assert slots.path == tmp_path / "slots"
        slots.write(index, 7.0)
        assert owner.read(1) == SlotState(7.0, 2)
        assert owner.read(0) == SlotState(None, 0)
    finally:
        slots.close()
        owner.close()


def test_a_stop_that_arrives_while_children_start_stops_them_all(tmp_path: Path) -> None:
    """SIGTERM landing while the supervisor starts its children (a `docker stop` right at
    start-up): the child being started is told to stop, no further child starts, run() ends."""
    pool: WorkerSupervisor
    build = argv_for(IDLE_SILENT, tmp_path)
    argv_calls: list[int] = []

    def argv_stopping_at_first(index: int) -> list[str]:
        argv_calls.append(index)
        if index == 0:
            pool.request_stop()  # what the SIGTERM handler does, before this child exists
        return build(index)

    pool = WorkerSupervisor(argv_stopping_at_first, 2, HARD_LIMIT_S)
    done = threading.Event()

    def backstop() -> None:
        if not done.wait(BACKSTOP_S):
            for pid in pool.pids:
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    threading.Thread(target=backstop, daemon=True).start()
    started_at = time.monotonic()
    try:
        code = pool.run()
    finally:
        done.set()
    assert time.monotonic() - started_at < BACKSTOP_S, "run() waited for a child never stopped"
    assert code == 0
    assert argv_calls == [0], "no child is started after the stop request"
    assert pool.pids == []
