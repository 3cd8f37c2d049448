"""``metawsm status``, ``watch`` and ``operator`` as a person runs them, and escalation notify.

Every command runs as a subprocess (``python -m metawsm``) against the pipeline's database and
Redis, with a worker process (``metawsm worker --pool solo``) applying what they submit.
"""

from __future__ import annotations

import json
import os
import queue
import shlex
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from metawsm.domain.snapshot import to_json
from metawsm.messages.common import Actor
from metawsm.services import escalation, lifecycle, runs, snapshot
from metawsm.storage.models import ForumEvent, ForumOutbox
from metawsm.storage.types import utcnow
from metawsm.storage.uow import unit_of_work
from tests.fixtures.database import NO_BROKER_URL, settings_for
from tests.fixtures.pipeline import FAST, Pipeline, wait_until
from tests.fixtures.workers import TaskRecorder
from workers.app import create_app

OPERATOR = Actor(type="operator", name="olga")
CLI_TIMEOUT_S = 120.0  # a cold interpreter on a busy machine; normally ~1-2 s
BIN = str(Path(sys.executable).parent)


# Running the CLI --------------------------------------------------------------------------------


def _env(p: Pipeline, **extra: str) -> dict[str, str]:
    """The environment of a person's shell on this pipeline (``metawsm`` on PATH)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("METAWSM_") and k != "NO_COLOR"}
    env.update(
        METAWSM_DATABASE_URL=p.settings.database_url,
        METAWSM_BROKER_URL=p.settings.broker_url,
        METAWSM_WAIT_TIMEOUT_S="15",
        PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
    )
    env.update(extra)
    return env


def metawsm(p: Pipeline, cwd: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    """Run ``python -m metawsm ARGS`` to completion (killed after CLI_TIMEOUT_S)."""
    return subprocess.run(
        [sys.executable, "-m", "metawsm", *args],
        env=_env(p, **extra),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        check=False,
    )


@dataclass
class Live:
    """A long-running CLI subprocess whose stdout lines arrive on a queue."""

    proc: subprocess.Popen[str]
    lines: queue.Queue[str]

    def next_line(self, deadline: float) -> str:
        """The next stdout line, failing at ``deadline`` (time.monotonic)."""
        while True:
            remaining = deadline - time.monotonic()
            assert remaining > 0, "timed out waiting for a line from the subprocess"
            try:
                return self.lines.get(timeout=min(remaining, 0.5))
            except queue.Empty:
                assert self.proc.poll() is None, f"exited {self.proc.returncode} before the line"


@contextmanager
def live(p: Pipeline, cwd: Path, *args: str) -> Iterator[Live]:
    """Start ``python -m metawsm ARGS``; killed and reaped on exit."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "metawsm", *args],
        env=_env(p),
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    lines: queue.Queue[str] = queue.Queue()

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        yield Live(proc, lines)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
        reader.join(timeout=10)


# Driving runs ----------------------------------------------------------------------------------


def _create(p: Pipeline, agents: tuple[str, ...] = ("alice",), ticket: str = "TCK-1") -> str:
    return p.create_run(OPERATOR, agents, [ticket])


def _signal(p: Pipeline, run_id: str, agent: str, actor: str = "agent", **signal: Any) -> None:
    outcome = p.control_signal(run_id, agent, actor, **signal)
    assert outcome.status == "applied", outcome.reason


def _ask(p: Pipeline, run_id: str, question: str = "Which DB?", agent: str = "alice") -> None:
    _signal(p, run_id, agent, control_type="guidance_request", question=question)


def _answer(p: Pipeline, run_id: str, answer: str = "SQLite", agent: str = "alice") -> None:
    _signal(p, run_id, agent, actor="operator", control_type="guidance_answer", answer=answer)


def _complete(p: Pipeline, run_id: str, agent: str = "alice") -> None:
    _signal(p, run_id, agent, control_type="completion", summary="done")
    _signal(
        p, run_id, agent, control_type="validation", status="passed", done_criteria="tests pass"
    )


def _status(p: Pipeline, run_id: str) -> str:
    return str(runs.run_rows(p.engine, run_id)[0]["status"])


def _wait_status(p: Pipeline, run_id: str, status: str) -> None:
    wait_until(lambda: _status(p, run_id) == status, 15, f"run {run_id} to be {status}")


def _decisions(p: Pipeline, run_id: str) -> list[dict[str, Any]]:
    with unit_of_work(p.engine, readonly=True) as s:
        rows = s.execute(
            select(ForumEvent.payload)
            .where(ForumEvent.run_id == run_id, ForumEvent.event_type == "operator.decision")
            .order_by(ForumEvent.sequence)
        ).scalars()
        return [dict(r) for r in rows]


def _strip_clock(data: Any) -> Any:
    """``data`` without the fields that depend on when it was read."""
    if isinstance(data, dict):
        return {
            k: _strip_clock(v)
            for k, v in data.items()
            if k != "generated_at" and not k.endswith("age_s")
        }
    if isinstance(data, list):
        return [_strip_clock(v) for v in data]
    return data


@pytest.fixture
def p(process_pipeline: Pipeline) -> Iterator[Pipeline]:
    """The pipeline with its worker process, settled after the test (nothing in flight when it
    stops)."""
    yield process_pipeline
    process_pipeline.settle()


# status ----------------------------------------------------------------------------------------


def test_status_json_is_the_snapshot_and_needs_no_redis(p: Pipeline, tmp_path: Path) -> None:
    run_id = _create(p, agents=("alice", "bob"))
    _ask(p, run_id)
    _wait_status(p, run_id, "awaiting_guidance")
    p.settle()
    done = metawsm(p, tmp_path, "status", "--run-id", run_id, "--json")
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    expected = to_json(snapshot.build(p.engine, p.settings, run_id=run_id))
    assert _strip_clock(printed) == _strip_clock(expected)
    assert printed["runs"][0]["pending_guidance"][0]["question"] == "Which DB?"

    offline = metawsm(
        p, tmp_path, "status", "--run-id", run_id, "--json", METAWSM_BROKER_URL=NO_BROKER_URL
    )
    assert offline.returncode == 0, offline.stderr
    assert _strip_clock(json.loads(offline.stdout)) == _strip_clock(expected)


def _stored_docs(p: Pipeline) -> dict[str, int]:
    with unit_of_work(p.engine, readonly=True) as s:
        rows = s.execute(text("SELECT run_id, facts_version FROM run_snapshot_docs")).all()
    return {rid: int(version) for rid, version in rows}


def test_status_stores_each_runs_document_and_the_next_status_reads_it_unchanged(
    p: Pipeline, tmp_path: Path
) -> None:
    ids = [_create(p, agents=("alice", "bob")), _create(p, ticket="TCK-2")]
    _ask(p, ids[0])
    _wait_status(p, ids[0], "awaiting_guidance")
    p.settle()
    assert _stored_docs(p) == {}
    first = metawsm(p, tmp_path, "status", "--all", "--json")
    assert first.returncode == 0, first.stderr
    stored = _stored_docs(p)
    assert sorted(stored) == sorted(ids)  # stored by the command line, after its read
    again = metawsm(p, tmp_path, "status", "--all", "--json")  # from the stored documents
    assert again.returncode == 0, again.stderr
    assert _stored_docs(p) == stored
    assert _strip_clock(json.loads(again.stdout)) == _strip_clock(json.loads(first.stdout))
    _answer(p, ids[0])  # the run's facts change: its document is made again and stored
    _wait_status(p, ids[0], "running")
    p.settle()
    after = metawsm(p, tmp_path, "status", "--run-id", ids[0], "--json")
    assert json.loads(after.stdout)["runs"][0]["pending_guidance"] == []
    assert _stored_docs(p)[ids[0]] > stored[ids[0]] and _stored_docs(p)[ids[1]] == stored[ids[1]]


def test_status_text_shows_every_active_run_without_colour(p: Pipeline, tmp_path: Path) -> None:
    waiting = _create(p)
    _ask(p, waiting, "Which DB should I use?")
    _wait_status(p, waiting, "awaiting_guidance")
    busy = _create(p, ticket="TCK-2")
    done = metawsm(p, tmp_path, "status")
    assert done.returncode == 0, done.stderr
    assert f"Run: {waiting}  Status: awaiting_guidance  Mode: run  Tickets: TCK-1" in done.stdout
    assert f"Run: {busy}  Status: running" in done.stdout
    assert "Which DB should I use?" in done.stdout
    assert "\x1b[" not in done.stdout
    one = metawsm(p, tmp_path, "status", "--ticket", "TCK-2")
    assert f"Run: {busy}" in one.stdout and waiting not in one.stdout


# watch -----------------------------------------------------------------------------------------


def test_a_person_can_answer_guidance_by_running_the_command_watch_printed_and_the_run_resumes(
    p: Pipeline, tmp_path: Path
) -> None:
    run_id = _create(p)
    _ask(p, run_id, "Which DB?")
    _wait_status(p, run_id, "awaiting_guidance")

    watched = metawsm(p, tmp_path, "watch", "--run-id", run_id)
    assert watched.returncode == 6, (watched.stdout, watched.stderr)
    alert, hint_line = watched.stdout.splitlines()[:2]
    assert alert == "[guidance_needed] agent alice asks: Which DB?"
    hint = hint_line.removeprefix("  -> ")
    assert hint == (
        f"metawsm forum signal --run-id {run_id} --agent-name alice"
        " --type guidance_answer --answer '<answer>'"
    )

    argv = shlex.split(hint.replace("<answer>", "Use PostgreSQL; prod runs 16"))
    answered = subprocess.run(
        argv, env=_env(p), cwd=tmp_path, capture_output=True, text=True, timeout=CLI_TIMEOUT_S
    )
    assert answered.returncode == 0, (answered.stdout, answered.stderr)
    assert answered.stdout.startswith("applied control_signal")
    _wait_status(p, run_id, "running")
    [run] = snapshot.build(p.engine, p.settings, run_id=run_id).runs
    assert run.pending_guidance == []
    with unit_of_work(p.engine, readonly=True) as s:
        last = s.execute(
            select(ForumEvent.payload, ForumEvent.actor_type)
            .where(ForumEvent.run_id == run_id, ForumEvent.event_type == "forum.control.signal")
            .order_by(ForumEvent.sequence.desc())
            .limit(1)
        ).one()
    assert last.payload["signal"]["answer"] == "Use PostgreSQL; prod runs 16"
    assert last.actor_type == "operator"


def test_watch_exits_0_on_a_completed_run_5_on_a_stopped_one_and_1_on_a_failed_one(
    p: Pipeline, tmp_path: Path
) -> None:
    completed = _create(p)
    # Its guidance request waited past the SLA and escalated before it was answered: that
    # escalation is history once answered, and must not keep watch from seeing run_done.
    _ask(p, completed)
    p.settle()
    later = utcnow() + timedelta(minutes=31)
    assert escalation.raise_due(p.container.runtime, later) == 1
    _answer(p, completed)
    _complete(p, completed)
    _wait_status(p, completed, "completed")
    stopped = _create(p)
    lifecycle.stop_run(p.container.runtime, stopped, OPERATOR)
    failed = _create(p)
    lifecycle.set_agent_status(p.container.runtime, failed, "alice", "failed", OPERATOR)

    expected = {
        completed: (0, "run_done", f"metawsm close --run-id {completed}"),
        stopped: (5, "run_stopped", f"metawsm run resume --run-id {stopped}"),
        failed: (1, "run_failed", f"metawsm run resume --run-id {failed}"),
    }
    for run_id, (code, event, hint) in expected.items():
        done = metawsm(p, tmp_path, "watch", "--run-id", run_id, "--json")
        assert done.returncode == code, (run_id, done.stdout, done.stderr)
        [alert] = [json.loads(line) for line in done.stdout.splitlines()]
        assert (alert["event"], alert["hint"], alert["terminal"], alert["run_id"]) == (
            event,
            hint,
            True,
            run_id,
        )


def test_watch_follows_the_event_log_and_alerts_as_a_guidance_request_arrives(
    p: Pipeline, tmp_path: Path
) -> None:
    run_id = _create(p, agents=("alice", "bob"))
    # bob stalled: watch prints that at once, which tells us it is past its first snapshot.
    lifecycle.set_agent_status(p.container.runtime, run_id, "bob", "stalled", OPERATOR)
    p.settle()
    with live(p, tmp_path, "watch", "--run-id", run_id, "--json") as watch:
        first = json.loads(watch.next_line(time.monotonic() + CLI_TIMEOUT_S))
        assert (first["event"], first["terminal"]) == ("agent_unhealthy", False)
        _ask(p, run_id, "Shall I drop the table?")
        asked_at = time.monotonic()
        alert = json.loads(watch.next_line(asked_at + 5.0))  # the refresh would be 15 s
        assert time.monotonic() - asked_at < 5.0
        assert (alert["event"], alert["message"]) == (
            "guidance_needed",
            "agent alice asks: Shall I drop the table?",
        )
        assert watch.proc.wait(timeout=30) == 6


def test_watch_notify_cmd_gets_the_event_run_and_message_in_its_environment(
    p: Pipeline, tmp_path: Path
) -> None:
    run_id = _create(p)
    _ask(p, run_id, "Which DB?")
    _wait_status(p, run_id, "awaiting_guidance")
    out = tmp_path / "notified.env"
    cmd = f"env >> {shlex.quote(str(out))}"
    done = metawsm(p, tmp_path, "watch", "--run-id", run_id, "--notify-cmd", cmd)
    assert done.returncode == 6, done.stderr
    env = dict(line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
    assert env["METAWSM_EVENT"] == "guidance_needed"
    assert env["METAWSM_RUN_ID"] == run_id
    assert env["METAWSM_MESSAGE"] == "agent alice asks: Which DB?"
    assert env["METAWSM_RUN_STATUS"] == "awaiting_guidance"
    assert env["METAWSM_TICKETS"] == "TCK-1"
    assert "--type guidance_answer" in env["METAWSM_HINT"]
    assert out.read_text().count("METAWSM_EVENT=") == 1


def test_watch_on_a_ticket_follows_its_newest_run_not_an_older_finished_one(
    p: Pipeline, tmp_path: Path
) -> None:
    old = _create(p, ticket="TCK-7")
    lifecycle.stop_run(p.container.runtime, old, OPERATOR)
    new = _create(p, ticket="TCK-7")
    done = metawsm(p, tmp_path, "watch", "--ticket", "TCK-7", "--once", "--json")
    assert (done.returncode, json.loads(done.stdout)) == (0, []), (done.stdout, done.stderr)
    _ask(p, new)
    done = metawsm(p, tmp_path, "watch", "--ticket", "TCK-7", "--json")
    assert done.returncode == 6, (done.stdout, done.stderr)
    assert json.loads(done.stdout)["run_id"] == new


def test_watch_over_all_runs_alerts_a_run_that_fails_and_keeps_watching(
    p: Pipeline, tmp_path: Path
) -> None:
    run_id = _create(p, agents=("alice", "bob"))
    lifecycle.set_agent_status(p.container.runtime, run_id, "bob", "stalled", OPERATOR)
    p.settle()
    with live(p, tmp_path, "watch", "--json") as watch:
        first = json.loads(watch.next_line(time.monotonic() + CLI_TIMEOUT_S))
        assert (first["run_id"], first["event"]) == (run_id, "agent_unhealthy")
        lifecycle.set_agent_status(p.container.runtime, run_id, "alice", "failed", OPERATOR)
        alert = json.loads(watch.next_line(time.monotonic() + 10.0))
        assert (alert["run_id"], alert["event"], alert["run_status"]) == (
            run_id,
            "run_failed",
            "failed",
        )
        assert watch.proc.poll() is None  # all-runs mode keeps watching
        other = _create(p)
        _ask(p, other)
        alert = json.loads(watch.next_line(time.monotonic() + 10.0))
        assert (alert["run_id"], alert["event"]) == (other, "guidance_needed")


# operator ----------------------------------------------------------------------------------------


def _operate(p: Pipeline, cwd: Path, *args: str, **env: str) -> list[dict[str, Any]]:
    """The decisions of one ``operator --once --json`` pass (one JSON array)."""
    done = metawsm(p, cwd, "operator", "--once", "--json", *args, **env)
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
    decisions: list[dict[str, Any]] = json.loads(done.stdout)
    return decisions


def test_operator_records_escalate_guidance_once_and_nothing_while_nothing_changes(
    p: Pipeline, tmp_path: Path
) -> None:
    run_id = _create(p)
    _ask(p, run_id, "Which DB?")
    _wait_status(p, run_id, "awaiting_guidance")
    [decision] = _operate(p, tmp_path, "--run-id", run_id)
    assert (decision["intent"], decision["recorded"], decision["executed"]) == (
        "escalate_guidance",
        True,
        False,
    )
    assert decision["reason"] == "operator input is required: Which DB?"
    assert "--type guidance_answer" in decision["command"]
    [recorded] = _decisions(p, run_id)
    assert recorded == {
        "intent": "escalate_guidance",
        "reason": "operator input is required: Which DB?",
        "mode": "assist",
        "command": decision["command"],
        "executed": False,
        "fingerprint": decision["fingerprint"],
    }

    assert _operate(p, tmp_path, "--run-id", run_id) == []
    assert len(_decisions(p, run_id)) == 1

    _answer(p, run_id)
    _ask(p, run_id, "And which schema?")
    _wait_status(p, run_id, "awaiting_guidance")
    [again] = _operate(p, tmp_path, "--run-id", run_id)
    assert (
        again["intent"] == "escalate_guidance" and again["fingerprint"] != decision["fingerprint"]
    )
    assert [d["reason"] for d in _decisions(p, run_id)][-1].endswith("And which schema?")


def test_operator_in_auto_closes_a_completed_run_whose_gates_pass_and_assist_does_not(
    p: Pipeline, tmp_path: Path
) -> None:
    run_id = _create(p)
    _complete(p, run_id)
    _wait_status(p, run_id, "completed")
    [assisted] = _operate(p, tmp_path, "--run-id", run_id, "--mode", "assist")
    assert (assisted["intent"], assisted["executes"], assisted["executed"]) == (
        "close_ready",
        False,
        False,
    )
    assert _status(p, run_id) == "completed"
    [auto] = _operate(p, tmp_path, "--run-id", run_id, "--mode", "auto")
    assert (auto["intent"], auto["executes"], auto["executed"], auto["error"]) == (
        "close_ready",
        True,
        True,
        None,
    )
    assert _status(p, run_id) == "closed"
    assert [(d["intent"], d["mode"], d["executed"]) for d in _decisions(p, run_id)] == [
        ("close_ready", "assist", False),
        ("close_ready", "auto", True),
    ]


def test_operator_over_all_runs_in_auto_closes_completed_runs_too(
    p: Pipeline, tmp_path: Path
) -> None:
    done = _create(p)
    _complete(p, done)
    _wait_status(p, done, "completed")
    busy = _create(p)
    acted = {d["run_id"]: d for d in _operate(p, tmp_path, "--mode", "auto")}
    assert (acted[done]["intent"], acted[done]["executed"]) == ("close_ready", True)
    assert acted[busy]["intent"] == "noop"
    assert (_status(p, done), _status(p, busy)) == ("closed", "running")


def test_operator_dry_run_decides_but_records_and_executes_nothing(
    p: Pipeline, tmp_path: Path
) -> None:
    waiting = _create(p)
    _ask(p, waiting)
    completed = _create(p)
    _complete(p, completed)
    _wait_status(p, waiting, "awaiting_guidance")
    _wait_status(p, completed, "completed")
    [guided] = _operate(p, tmp_path, "--run-id", waiting, "--dry-run")
    assert (guided["intent"], guided["recorded"]) == ("escalate_guidance", False)
    [closing] = _operate(p, tmp_path, "--run-id", completed, "--dry-run", "--mode", "auto")
    assert (closing["intent"], closing["executes"], closing["executed"]) == (
        "close_ready",
        True,
        False,
    )
    assert closing["recorded"] is False
    assert _status(p, completed) == "completed"
    assert _decisions(p, waiting) == [] and _decisions(p, completed) == []


def test_a_stale_run_is_reported_once_the_operators_own_notes_are_no_activity(
    p: Pipeline, tmp_path: Path
) -> None:
    run_id = _create(p)
    p.settle()
    [run] = snapshot.build(p.engine, p.settings, run_id=run_id).runs
    assert run.last_event_at is not None
    quiet_since = run.last_event_at
    wait_until(
        lambda: utcnow() - quiet_since > timedelta(seconds=1.5), 10, "the run to be quiet for 1 s"
    )
    stale = {"METAWSM_OPERATOR_STALE_RUN_S": "1"}
    [decision] = _operate(p, tmp_path, "--run-id", run_id, **stale)
    assert (decision["intent"], decision["recorded"]) == ("stale_run", True)
    assert _operate(p, tmp_path, "--run-id", run_id, **stale) == []
    assert [d["intent"] for d in _decisions(p, run_id)] == ["stale_run"]


# The escalation notify consumer ------------------------------------------------------------------


@pytest.fixture
def notify_pipeline(db_url: str, redis_url: str, tmp_path: Path) -> Iterator[Pipeline]:
    """A pipeline whose settings run ``env >> notified.env`` for every escalation."""
    out = tmp_path / "notified.env"
    settings = settings_for(
        db_url, redis_url, escalation_notify_cmd=f"env >> {shlex.quote(str(out))}", **FAST
    )
    app = create_app(settings)
    try:
        pipeline = Pipeline(settings=settings, app=app, workdir=tmp_path)
        with pipeline.inprocess_worker():  # task_runs sees only tasks run in this process
            yield pipeline
            pipeline.settle()
    finally:
        app.container.close()


def test_an_escalation_runs_the_notify_command_once_even_when_redelivered(
    notify_pipeline: Pipeline, tmp_path: Path, task_runs: TaskRecorder
) -> None:
    p = notify_pipeline
    out = tmp_path / "notified.env"
    run_id = _create(p)
    _ask(p, run_id, "Which DB?")
    p.settle()
    later = utcnow() + timedelta(minutes=31)
    assert escalation.raise_due(p.container.runtime, later) == 1
    p.settle()
    wait_until(lambda: out.exists() and "METAWSM_TIER=" in out.read_text(), 15, "notification")
    env = {
        k: v
        for k, v in (line.split("=", 1) for line in out.read_text().splitlines() if "=" in line)
    }
    [run] = snapshot.build(p.engine, p.settings, run_id=run_id, now=later).runs
    [raised] = run.escalations
    assert env["METAWSM_EVENT"] == "sla_escalation"
    assert env["METAWSM_TIER"] == "operator"
    assert env["METAWSM_RUN_ID"] == run_id
    assert env["METAWSM_TICKET"] == "TCK-1"
    assert env["METAWSM_THREAD_ID"] == raised.thread_id
    assert env["METAWSM_MESSAGE"] == raised.reason
    assert env["METAWSM_MESSAGE"].startswith("agent alice has waited 31 min for guidance")
    assert out.read_text().count("METAWSM_TIER=") == 1

    topic = p.container.topics.integration("escalation_notify")
    with unit_of_work(p.engine, readonly=True) as s:
        message_id, payload = s.execute(
            select(ForumOutbox.message_id, ForumOutbox.payload).where(ForumOutbox.topic == topic)
        ).one()
    assert message_id == f"{env['METAWSM_EVENT_ID']}:escalation_notify"
    p.container.publisher.publish(topic, message_id, payload)  # a redelivery, same message id
    wait_until(lambda: len(task_runs.results(message_id)) == 2, 15, "the redelivery to finish")
    assert sorted(task_runs.results(message_id)) == ["applied", "duplicate"]
    assert out.read_text().count("METAWSM_TIER=") == 1
