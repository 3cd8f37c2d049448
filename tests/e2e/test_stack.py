"""The Procfile processes (four worker roles and beat) as subprocesses, driven through the CLI.

Each process runs in its own process group and is killed at teardown. Every wait is a condition
with a deadline; a process that dies early fails the test with its log.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.database import NO_BROKER_URL
from tests.fixtures.redis import ControlledRedisServer

pytestmark = pytest.mark.e2e

PROCESSES = {
    "commands": ("worker", "--role", "commands", "--concurrency", "1"),
    "events": ("worker", "--role", "events", "--concurrency", "1"),
    "integration": ("worker", "--role", "integration", "--concurrency", "1"),
    "housekeeping": ("worker", "--role", "housekeeping", "--concurrency", "1"),
    "beat": ("beat",),
}
FAST = {
    "METAWSM_DRAIN_INTERVAL_S": "0.5",
    "METAWSM_OUTBOX_REDRIVE_AGE_S": "2",
    "METAWSM_RETRY_BACKOFF_BASE_S": "0.1",
    "METAWSM_RETRY_BACKOFF_CAP_S": "1",
    "METAWSM_WAIT_TIMEOUT_S": "30",
}
CLI_TIMEOUT_S = 90.0  # `metawsm demo` runs a dozen commands
STOP_GRACE_S = 5.0


def metawsm_env(db_url: str, broker_url: str) -> dict[str, str]:
    """This environment without any METAWSM_ variable, plus the database, broker and FAST."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("METAWSM_")}
    env.update(FAST, METAWSM_DATABASE_URL=db_url, METAWSM_BROKER_URL=broker_url)
    return env


def _kill_group(proc: subprocess.Popen[Any], sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)


def run_cli(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``python -m metawsm ARGS`` in its own process group, killed if it outlives the timeout."""
    argv = [sys.executable, "-m", "metawsm", *args]
    proc = subprocess.Popen(
        argv, env=env, cwd=cwd, text=True, start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        out, err = proc.communicate(timeout=CLI_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        _kill_group(proc, signal.SIGKILL)
        out, err = proc.communicate()
        raise AssertionError(f"metawsm {' '.join(args)} hung: {out}{err}") from None
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


@dataclass
class Stack:
    """The worker roles and beat as subprocesses sharing one environment and directory."""

    env: dict[str, str]
    cwd: Path
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start(self) -> None:
        """Start every process, each in its own process group, logging to ``<cwd>/<name>.log``."""
        for name, args in PROCESSES.items():
            with open(self.cwd / f"{name}.log", "wb") as log:
                self.procs[name] = subprocess.Popen(
                    [sys.executable, "-m", "metawsm", *args],
                    env=self.env,
                    cwd=self.cwd,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )

    def stop(self) -> None:
        """SIGTERM every process group, then SIGKILL whatever is left after the grace period."""
        for proc in self.procs.values():
            _kill_group(proc, signal.SIGTERM)
        deadline = time.monotonic() + STOP_GRACE_S
        for proc in self.procs.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            _kill_group(proc, signal.SIGKILL)  # also reaps prefork children left in the group
            proc.wait(timeout=10)

    def check_alive(self) -> None:
        """Fail with its log when a process exited on its own."""
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                log = (self.cwd / f"{name}.log").read_text(errors="replace")[-3000:]
                raise AssertionError(f"{name} exited with {proc.returncode}:\n{log}")

    def cli(self, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
        """Run the CLI against the stack's database and broker (env overrides: VAR=...)."""
        overrides = {f"METAWSM_{name}": value for name, value in env.items()}
        return run_cli({**self.env, **overrides}, self.cwd, *args)

    def json(self, *args: str) -> Any:
        """Run a CLI command that must succeed and return its JSON output."""
        result = self.cli(*args, "--json")
        assert result.returncode == 0, (args, result.returncode, result.stdout, result.stderr)
        return json.loads(result.stdout)

    def until(self, predicate: Callable[[], Any], timeout_s: float, what: str) -> Any:
        """Poll ``predicate`` until truthy; fail after ``timeout_s`` or when a process died."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.check_alive()
            value = predicate()
            if value:
                return value
            assert time.monotonic() < deadline, f"timed out after {timeout_s} s: {what}"
            time.sleep(0.2)


@pytest.fixture
def stack(sqlite_url: str, redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    """The processes' environment on a migrated SQLite file and the private Redis (not started)."""
    built = Stack(env=metawsm_env(sqlite_url, redis_url), cwd=tmp_path)
    try:
        yield built
    finally:
        built.stop()


def _threads(stack: Stack) -> dict[str, dict[str, Any]]:
    return {t["thread_id"]: t for t in stack.json("forum", "list")["threads"]}


def test_the_stack_applies_and_projects_commands_given_through_the_cli(stack: Stack) -> None:
    stack.start()
    ask = ["forum", "ask", "--ticket", "TCK-1", "--title", "Build fails", "--body", "why?"]
    opened = stack.json(*ask, "--run-id", "run-1", "--agent", "alice")
    thread = opened["thread_id"]
    assert opened["status"] == "applied" and thread
    for args in (
        ["answer", "--body", "retry with -v"],
        ["state", "--state", "waiting_human"],
        ["close", "--reason", "done"],
    ):
        out = stack.json("forum", args[0], "--thread-id", thread, *args[1:])
        assert (out["status"], out["thread_id"]) == ("applied", thread), args
    refused = stack.cli("forum", "state", "--thread-id", thread, "--state", "triaged")
    assert refused.returncode == 1
    assert f"rejected: forum thread {thread} is closed" in refused.stderr

    def projected() -> dict[str, Any] | None:
        view = _threads(stack).get(thread)
        return view if view and view["state"] == "closed" and view["posts_count"] == 2 else None

    view = stack.until(projected, 20, "the closed thread in the read model")
    assert (view["ticket"], view["run_id"], view["agent_name"]) == ("TCK-1", "run-1", "alice")
    assert view["closed_at"] is not None and view["is_unanswered"] is False
    check = stack.cli("projections", "rebuild", "--check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "0 difference(s)" in check.stdout


def test_commands_given_while_no_worker_runs_are_applied_once_the_stack_starts(
    stack: Stack, redis_server: ControlledRedisServer
) -> None:
    base = ["forum", "ask", "--ticket", "TCK-1", "--title", "t", "--body", "b", "--no-wait"]
    # One published, then lost with the broker's data: reconciliation must re-drive it.
    lost = stack.json(*base, "--thread-id", "t-lost")
    assert (lost["status"], lost["published"]) == ("accepted", True)
    redis_server.flushall()
    # One the CLI could not publish at all: the drainer must publish it.
    result = stack.cli(*base, "--thread-id", "t-unpublished", "--json", BROKER_URL=NO_BROKER_URL)
    assert result.returncode == 0, result.stderr
    unpublished = json.loads(result.stdout)
    assert (unpublished["status"], unpublished["published"]) == ("accepted", False)

    stack.start()
    stack.until(lambda: {"t-lost", "t-unpublished"} <= set(_threads(stack)), 30, "both threads")
    for outcome in (lost, unpublished):
        thread = outcome["thread_id"]
        again = stack.json(*base[:-1], "--thread-id", thread, "--command-id", outcome["command_id"])
        assert (again["status"], again["command_id"]) == ("applied", outcome["command_id"])
    assert sorted(_threads(stack)) == ["t-lost", "t-unpublished"]


@pytest.mark.parametrize("process", ["commands", "beat"])
def test_a_process_refuses_to_start_on_an_unmigrated_database(
    empty_sqlite_url: str, redis_url: str, tmp_path: Path, process: str
) -> None:
    env = metawsm_env(empty_sqlite_url, redis_url)
    missing = Path(empty_sqlite_url.removeprefix("sqlite:///"))
    result = run_cli(env, tmp_path, *PROCESSES[process])  # no file: no database, none created
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"no metawsm database at {missing}" in result.stderr and not missing.exists()
    missing.touch()  # an empty SQLite file: a database without the schema
    result = run_cli(env, tmp_path, *PROCESSES[process])
    assert result.returncode == 3, result.stdout + result.stderr
    assert f"database at {empty_sqlite_url} has no metawsm schema" in result.stderr
    assert "run `metawsm db upgrade`" in result.stderr


def test_demo_plays_the_whole_bootstrap_story_on_the_stack(stack: Stack) -> None:
    stack.start()
    demo = stack.cli("demo", "--ticket", "DEMO-1")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    out = demo.stdout
    run_id = out.split("run_id=", 1)[1].split()[0]
    assert "(the builder's waiting `forum signal --wait` returned:)" in out
    assert "Use SQLite for the demo" in out.split("returned:)", 1)[1]
    assert f"run {run_id} (completed): every close gate is met" in out
    assert f"demo complete: run {run_id} closed in " in out
    shown = stack.json("run", "show", "--run-id", run_id)
    assert (shown["status"], shown["mode"], shown["tickets"]) == ("closed", "bootstrap", ["DEMO-1"])
    assert sorted(a["agent_name"] for a in shown["agents"]) == ["builder", "planner"]
