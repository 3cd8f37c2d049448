"""``metawsm forum`` through the real CLI entry point: writes, reads, env defaults, exit codes.

Commands run in-process through ``metawsm.cli.main`` (so metawsm errors become their documented
exit codes) against a real database, a real Redis and a solo worker (in-process, or the worker
process where a test starts one); ``watch --follow`` runs as a subprocess while other threads
write.
"""

from __future__ import annotations

import getpass
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from metawsm.cli import main
from metawsm.services import outbox, queries
from metawsm.services.submit import read_outcome, wait_for_outcome
from metawsm.storage.models import ForumCommand, ForumOutbox
from metawsm.storage.uow import unit_of_work
from tests.fixtures.database import NO_BROKER_URL
from tests.fixtures.pipeline import Pipeline, wait_until

DEFAULT_VARS = ("TICKET", "RUN_ID", "AGENT_NAME", "ACTOR_NAME")


class _Entry(click.Command):
    """``metawsm.cli.main`` shaped like a click command, so CliRunner sees its exit codes."""

    def main(self, args: Any = None, prog_name: Any = None, **_: Any) -> Any:  # type: ignore[override]
        return main(list(args or ()))


def metawsm(p: Pipeline, *args: str, **env: str | None) -> Result:
    """Run ``metawsm ARGS`` against the pipeline's database and broker (env overrides: VAR=...)."""
    base: dict[str, str | None] = {f"METAWSM_{name}": None for name in DEFAULT_VARS}
    base["METAWSM_DATABASE_URL"] = p.settings.database_url
    base["METAWSM_BROKER_URL"] = p.settings.broker_url
    base["METAWSM_WAIT_TIMEOUT_S"] = "15"
    base.update({f"METAWSM_{k}": v for k, v in env.items()})
    return CliRunner().invoke(_Entry("metawsm"), list(args), env=base)


def ok_json(result: Result) -> Any:
    """The JSON on stdout of a successful run."""
    assert result.exit_code == 0, (result.exit_code, result.stdout, result.stderr)
    return json.loads(result.stdout)


def ask(p: Pipeline, thread_id: str, ticket: str = "TCK-1", *extra: str, **env: str) -> Any:
    """Open ``thread_id`` through the CLI and return its JSON outcome."""
    args = ["forum", "ask", "--thread-id", thread_id, "--ticket", ticket, "--json"]
    return ok_json(metawsm(p, *args, "--title", f"Build fails {thread_id}", *extra, **env))


def _ledger(p: Pipeline) -> tuple[int, int]:
    with unit_of_work(p.engine, readonly=True) as s:
        commands = s.execute(select(func.count()).select_from(ForumCommand)).scalar_one()
        rows = s.execute(select(func.count()).select_from(ForumOutbox)).scalar_one()
    return commands, rows


# Writes ---------------------------------------------------------------------------------------


def test_every_write_prints_its_applied_outcome_as_json(pipeline: Pipeline) -> None:
    opened = ask(pipeline, "t-1", "TCK-1", "--body", "why?", "--priority", "high")
    assert opened["status"] == "applied" and opened["command_type"] == "open_thread"
    assert opened["thread_id"] == "t-1" and opened["published"] is True
    steps = [
        ("post", ["--body", "more detail"], "add_post"),
        ("assign", ["--assignee", "hana", "--assignee-type", "human"], "assign_thread"),
        ("priority", ["--priority", "urgent"], "set_priority"),
        ("state", ["--state", "waiting_human"], "change_state"),
        ("answer", ["--body", "do X"], "answer_thread"),
        ("close", ["--reason", "done"], "close_thread"),
    ]
    for sub, args, command_type in steps:
        out = ok_json(metawsm(pipeline, "forum", sub, "--thread-id", "t-1", *args, "--json"))
        assert (out["status"], out["command_type"], out["thread_id"]) == (
            "applied",
            command_type,
            "t-1",
        ), sub
        assert out["reason"] is None
    pipeline.settle()
    view = ok_json(metawsm(pipeline, "forum", "thread", "--thread-id", "t-1", "--json"))["thread"]
    assert (view["state"], view["priority"], view["posts_count"]) == ("closed", "urgent", 3)
    assert (view["assignee_type"], view["assignee_name"]) == ("human", "hana")


def test_a_write_without_json_prints_one_status_line(pipeline: Pipeline) -> None:
    result = metawsm(pipeline, "forum", "ask", "--ticket", "T", "--title", "x", "--body", "y")
    assert result.exit_code == 0, result.stderr
    status, command_type, command_id, thread = result.stdout.split()
    assert (status, command_type) == ("applied", "open_thread")
    assert command_id.startswith("cmd") and thread.startswith("thread=")


def test_the_same_command_id_is_applied_once(pipeline: Pipeline) -> None:
    first = ask(pipeline, "t-1", "TCK-1", "--body", "b", "--command-id", "cmd-fixed")
    again = ask(pipeline, "t-1", "TCK-1", "--body", "b", "--command-id", "cmd-fixed")
    assert first == again and again["status"] == "applied"
    assert _ledger(pipeline)[0] == 1


def test_a_command_id_reused_for_another_command_is_a_usage_error_naming_the_first(
    pipeline: Pipeline,
) -> None:
    ask(pipeline, "t-a", "TCK-1", "--body", "a")
    opened = ask(pipeline, "t-b", "TCK-1", "--body", "b", "--command-id", "cmd-once")
    before = _ledger(pipeline)
    close = ["forum", "close", "--thread-id", "t-a"]
    reused = metawsm(pipeline, *close, "--command-id", "cmd-once")
    assert reused.exit_code == 2, (reused.stdout, reused.stderr)
    assert "cmd-once was already used for a open_thread command on thread t-b" in reused.stderr
    assert "close_thread command differs in command_type, actor_type, payload" in reused.stderr
    assert _ledger(pipeline) == before
    view = ok_json(metawsm(pipeline, "forum", "thread", "--thread-id", "t-a", "--json"))
    assert view["thread"]["state"] == "new"
    # The same command again with the same id stays idempotent.
    again = ask(pipeline, "t-b", "TCK-1", "--body", "b", "--command-id", "cmd-once")
    assert again == opened


def test_no_wait_returns_accepted_at_once_and_the_worker_applies_it_later(
    idle_pipeline: Pipeline,
) -> None:
    out = ask(idle_pipeline, "t-1", "TCK-1", "--body", "b", "--no-wait")
    assert (out["status"], out["published"], out["thread_id"]) == ("accepted", True, "t-1")
    with idle_pipeline.worker():
        assert wait_for_outcome(idle_pipeline.engine, out["command_id"], 15).status == "applied"


def _bodies(p: Pipeline, thread_id: str) -> tuple[int, int, list[str]]:
    detail = ok_json(metawsm(p, "forum", "thread", "--thread-id", thread_id, "--json"))
    posts = [post["body"] for post in detail["posts"]]
    return detail["thread"]["posts_count"], detail["as_of_thread_seq"], posts


def test_thread_shows_its_header_and_posts_as_of_the_same_point(idle_pipeline: Pipeline) -> None:
    p = idle_pipeline
    with p.inprocess_worker():
        ask(p, "t-1", "TCK-1", "--body", "first")
        p.settle()
    with p.inprocess_worker(role="commands"):  # applied, but no projector runs
        post = ["forum", "post", "--thread-id", "t-1", "--body", "second", "--json"]
        assert ok_json(metawsm(p, *post, "--wait", "applied"))["status"] == "applied"
        assert _bodies(p, "t-1") == (1, 1, ["first"])
    with p.inprocess_worker(role="events"):
        p.settle()
    assert _bodies(p, "t-1") == (2, 2, ["first", "second"])


def test_wait_projected_returns_once_the_read_models_show_the_write(
    idle_pipeline: Pipeline,
) -> None:
    p = idle_pipeline
    with p.inprocess_worker():
        ask(p, "t-1", "TCK-1", "--body", "first")
        p.settle()
    post = ["forum", "post", "--thread-id", "t-1", "--json", "--wait", "projected"]
    with p.inprocess_worker(role="commands"):
        stuck = metawsm(p, *post, "--body", "unseen", "--timeout", "1")
        assert stuck.exit_code == 4, (stuck.stdout, stuck.stderr)
        assert "not in the read models after 1 s" in stuck.stderr
    with p.inprocess_worker():
        assert ok_json(metawsm(p, *post, "--body", "seen"))["status"] == "applied"
        count, _, bodies = _bodies(p, "t-1")  # at once: no settling
        assert count == 3 and bodies[-1] == "seen"


def test_wait_and_no_wait_together_are_a_usage_error(pipeline: Pipeline) -> None:
    before = _ledger(pipeline)
    args = ["forum", "ask", "--ticket", "T", "--title", "x", "--body", "y"]
    result = metawsm(pipeline, *args, "--wait", "projected", "--no-wait")
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert "--wait and --no-wait cannot be combined" in result.stderr
    assert _ledger(pipeline) == before


def test_defaults_come_from_the_environment(pipeline: Pipeline) -> None:
    env = {"TICKET": "TCK-ENV", "RUN_ID": "run-env", "AGENT_NAME": "agent-env"}
    ask(pipeline, "t-env", "TCK-OTHER", "--body", "b")  # another ticket, filtered out below
    args = ["forum", "ask", "--thread-id", "t-1", "--title", "t", "--body", "b", "--json"]
    assert ok_json(metawsm(pipeline, *args, **env))["status"] == "applied"
    answer = ["forum", "answer", "--thread-id", "t-1", "--body", "a", "--json"]
    assert ok_json(metawsm(pipeline, *answer, ACTOR_NAME="op-env"))["status"] == "applied"
    pipeline.settle()
    listed = ok_json(metawsm(pipeline, "forum", "list", "--json", **env))["threads"]
    assert [t["thread_id"] for t in listed] == ["t-1"]
    assert (listed[0]["ticket"], listed[0]["run_id"]) == ("TCK-ENV", "run-env")
    assert listed[0]["agent_name"] == "agent-env"
    detail = ok_json(metawsm(pipeline, "forum", "thread", "--thread-id", "t-1", "--json"))
    authors = [(p["author_type"], p["author_name"]) for p in detail["posts"]]
    assert authors == [("agent", "agent-env"), ("operator", "op-env")]


# Reads ----------------------------------------------------------------------------------------


@pytest.fixture
def three_threads(pipeline: Pipeline) -> Pipeline:
    """t-1 (urgent, answered), t-2 (normal, body mentions 'flaky'), t-3 on another ticket."""
    ask(pipeline, "t-1", "TCK-1", "--body", "b1", "--priority", "urgent")
    ask(pipeline, "t-2", "TCK-1", "--body", "the test is flaky")
    ask(pipeline, "t-3", "TCK-2", "--body", "b3")
    ok_json(metawsm(pipeline, "forum", "answer", "--thread-id", "t-1", "--body", "ok", "--json"))
    pipeline.settle()
    return pipeline


def _ids(result: Result) -> list[str]:
    return [t["thread_id"] for t in ok_json(result)["threads"]]


def test_list_orders_by_priority_and_filters(three_threads: Pipeline) -> None:
    p = three_threads
    assert _ids(metawsm(p, "forum", "list", "--json")) == ["t-1", "t-3", "t-2"]
    assert _ids(metawsm(p, "forum", "list", "--ticket", "TCK-1", "--json")) == ["t-1", "t-2"]
    assert _ids(metawsm(p, "forum", "list", "--state", "answered", "--json")) == ["t-1"]
    assert _ids(metawsm(p, "forum", "list", "--limit", "1", "--json")) == ["t-1"]
    text = metawsm(p, "forum", "list", "--ticket", "TCK-1")
    lines = text.stdout.splitlines()
    assert text.exit_code == 0 and len(lines) == 2
    assert lines[0].startswith("thread=t-1 ticket=TCK-1 run_id=- state=answered priority=urgent")
    assert "posts=2" in lines[0] and lines[0].endswith("title=Build fails t-1")


def test_thread_shows_the_summary_and_posts(three_threads: Pipeline) -> None:
    detail = ok_json(metawsm(three_threads, "forum", "thread", "--thread-id", "t-1", "--json"))
    assert [p["kind"] for p in detail["posts"]] == ["opening", "answer"]
    assert [e["event_type"] for e in detail["events"]] == [
        "forum.thread.opened",
        "forum.post.added",
        "forum.state.changed",
    ]
    text = metawsm(three_threads, "forum", "thread", "--thread-id", "t-1").stdout.splitlines()
    assert text[0].startswith("thread=t-1 ") and "state=answered" in text[0]
    assert text[1].startswith("--- ") and text[1].endswith("(opening)") and text[2] == "b1"
    assert text[3].endswith(f"operator/{getpass.getuser()} (answer)")
    assert text[4] == "ok"


def test_an_unknown_thread_exits_1_saying_so(three_threads: Pipeline) -> None:
    result = metawsm(three_threads, "forum", "thread", "--thread-id", "t-nope")
    assert result.exit_code == 1
    assert "forum thread t-nope not found" in result.stderr and result.stdout == ""


def test_search_by_text_and_queues(three_threads: Pipeline) -> None:
    p = three_threads
    assert _ids(metawsm(p, "forum", "search", "--query", "FLAKY", "--json")) == ["t-2"]
    assert _ids(metawsm(p, "forum", "search", "--query", "fails t-3", "--json")) == ["t-3"]
    unanswered = metawsm(p, "forum", "search", "--queue", "unanswered", "--json")
    assert sorted(_ids(unanswered)) == ["t-2", "t-3"]
    text = metawsm(p, "forum", "search", "--query", "flaky")
    assert text.exit_code == 0 and text.stdout.startswith("thread=t-2 ")
    viewer = ["--viewer-type", "human", "--viewer-id", "hana"]
    unseen = ["forum", "search", "--queue", "unseen", "--json"]
    assert sorted(_ids(metawsm(p, *unseen, *viewer))) == ["t-1", "t-2", "t-3"]
    seen = ok_json(metawsm(p, "forum", "seen", "--thread-id", "t-1", *viewer, "--json"))
    assert seen["last_seen_event_sequence"] == 5  # t-1 answered: post added 4, state changed 5
    assert sorted(_ids(metawsm(p, *unseen, *viewer))) == ["t-2", "t-3"]
    refused = metawsm(p, *unseen)
    assert refused.exit_code == 2
    assert "--queue unseen requires --viewer-type and --viewer-id" in refused.stderr


def test_watch_prints_events_after_the_cursor_in_order(three_threads: Pipeline) -> None:
    p = three_threads
    lines = metawsm(p, "forum", "events", "--json").stdout.splitlines()
    events = [json.loads(line) for line in lines]
    assert [e["sequence"] for e in events] == [1, 2, 3, 4, 5]
    assert events[0]["event_type"] == "forum.thread.opened"
    after = metawsm(p, "forum", "events", "--cursor", "3", "--json").stdout.splitlines()
    assert [json.loads(line)["sequence"] for line in after] == [4, 5]
    text = metawsm(p, "forum", "events", "--ticket", "TCK-2", "--limit", "1")
    assert (
        text.stdout.startswith("3 ")
        and "forum.thread.opened thread=t-3 ticket=TCK-2" in text.stdout
    )
    assert text.stderr.strip() == "next_cursor=3"


# Exit codes -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--title", "   "], "--title: is required (blank after trimming)"),
        (["--title", "x" * 600], "--title: must be at most 512 characters (got 600)"),
        (["--title", "t", "--ticket", ""], "--ticket: is required (blank after trimming)"),
        (["--title", "t", "--priority", "asap"], "Invalid value for '--priority'"),
    ],
    ids=["blank-title", "long-title", "no-ticket", "bad-priority"],
)
def test_invalid_input_exits_2_naming_the_field_and_changes_nothing(
    idle_pipeline: Pipeline, args: list[str], message: str
) -> None:
    result = metawsm(idle_pipeline, "forum", "ask", "--body", "b", *args, "--json")
    assert result.exit_code == 2, (result.stdout, result.stderr)
    assert message in result.stderr and result.stdout == ""
    assert _ledger(idle_pipeline) == (0, 0)


def test_a_rejected_command_exits_1_with_the_reason_on_stderr(pipeline: Pipeline) -> None:
    result = metawsm(
        pipeline, "forum", "answer", "--thread-id", "t-missing", "--body", "x", "--json"
    )
    assert result.exit_code == 1
    assert json.loads(result.stdout)["status"] == "rejected"
    assert "rejected: forum thread t-missing not found" in result.stderr


def test_an_unmigrated_database_exits_3_and_says_where(
    idle_pipeline: Pipeline, empty_sqlite_url: str
) -> None:
    Path(empty_sqlite_url.removeprefix("sqlite:///")).touch()
    for args in (
        ["forum", "list"],
        ["forum", "ask", "--ticket", "T", "--title", "t", "--body", "b"],
    ):
        result = metawsm(idle_pipeline, *args, DATABASE_URL=empty_sqlite_url)
        assert result.exit_code == 3, (args, result.stderr)
        assert f"database at {empty_sqlite_url} has no metawsm schema" in result.stderr
        assert "run `metawsm db upgrade`" in result.stderr


def test_an_unreachable_database_exits_3_and_says_where(idle_pipeline: Pipeline) -> None:
    url = "postgresql://metawsm@127.0.0.1:1/metawsm"
    result = metawsm(idle_pipeline, "forum", "list", DATABASE_URL=url)
    assert result.exit_code == 3
    assert "cannot connect to the database at postgresql" in result.stderr
    assert "metawsm@127.0.0.1:1/metawsm" in result.stderr and "Connection refused" in result.stderr


def test_an_unreachable_broker_exits_3_after_the_wait_and_keeps_the_command(
    idle_pipeline: Pipeline,
) -> None:
    p = idle_pipeline
    args = ["forum", "ask", "--ticket", "T", "--title", "t", "--body", "b", "--thread-id", "t-1"]
    result = metawsm(
        p, *args, "--command-id", "cmd-1", "--timeout", "0.5", BROKER_URL=NO_BROKER_URL
    )
    assert result.exit_code == 3, result.stderr
    assert f"broker unreachable at {NO_BROKER_URL}" in result.stderr
    assert "command cmd-1 is accepted and durable but was not published" in result.stderr
    assert "it had no outcome after 0.5 s" in result.stderr
    outcome = read_outcome(p.engine, "cmd-1")
    assert outcome is not None and outcome.status == "accepted"
    # When the broker is back, the drainer publishes it and a worker applies it.
    with p.worker():
        wait_until(lambda: outbox.drain(p.engine, p.container.publisher, p.settings).sent, 10)
        assert wait_for_outcome(p.engine, "cmd-1", 15).status == "applied"


def test_an_unreachable_broker_with_no_wait_is_accepted_with_a_warning(
    idle_pipeline: Pipeline,
) -> None:
    args = ["forum", "ask", "--ticket", "T", "--title", "t", "--body", "b", "--no-wait", "--json"]
    result = metawsm(idle_pipeline, *args, BROKER_URL=NO_BROKER_URL)
    out = ok_json(result)
    assert (out["status"], out["published"]) == ("accepted", False)
    assert (
        f"is accepted and durable but not published yet (broker unreachable at {NO_BROKER_URL}"
        in result.stderr
    )
    assert "it will be published when the broker answers" in result.stderr


def test_a_wait_timeout_with_no_worker_exits_4(idle_pipeline: Pipeline) -> None:
    args = ["forum", "ask", "--ticket", "T", "--title", "t", "--body", "b", "--timeout", "0.3"]
    result = metawsm(idle_pipeline, *args, "--command-id", "cmd-1")
    assert result.exit_code == 4
    assert "command cmd-1 still accepted after 0.3 s" in result.stderr
    assert _ledger(idle_pipeline)[0] == 1


def test_python_m_metawsm_exits_with_the_documented_codes(
    idle_pipeline: Pipeline, empty_sqlite_url: str, tmp_path: Path
) -> None:
    def run(*args: str, db: str = idle_pipeline.settings.database_url) -> Any:
        env = _env(db, idle_pipeline.settings.broker_url)
        argv = [sys.executable, "-m", "metawsm", *args]
        return subprocess.run(
            argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60
        )

    usage = run("forum", "ask", "--ticket", "T", "--title", " ", "--body", "b")
    assert usage.returncode == 2 and "--title: is required" in usage.stderr
    unmigrated = run("forum", "list", db=empty_sqlite_url)
    assert unmigrated.returncode == 3 and "metawsm db upgrade" in unmigrated.stderr
    assert run("forum", "list", "--json").returncode == 0


# watch --follow -------------------------------------------------------------------------------


def _env(db_url: str, broker_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METAWSM_")}
    env.update(METAWSM_DATABASE_URL=db_url, METAWSM_BROKER_URL=broker_url)
    return env


class Follower:
    """``metawsm forum events --follow --json`` as a subprocess; collects the events it prints."""

    def __init__(self, p: Pipeline, cwd: Path) -> None:
        argv = [sys.executable, "-m", "metawsm", "forum", "events", "--follow", "--json"]
        self.proc = subprocess.Popen(
            argv,
            env=_env(p.settings.database_url, p.settings.broker_url),
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.events: list[dict[str, Any]] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)

    def until(self, sequence: int, timeout_s: float = 30.0) -> list[int]:
        """Collect events until one with ``sequence`` arrived; return every sequence so far."""
        deadline = time.monotonic() + timeout_s
        while not self.events or self.events[-1]["sequence"] < sequence:
            remaining = deadline - time.monotonic()
            assert remaining > 0 and self.proc.poll() is None, (self.events, self._stderr())
            try:
                self.events.append(json.loads(self.lines.get(timeout=min(remaining, 0.5))))
            except queue.Empty:
                continue
        return [e["sequence"] for e in self.events]

    def _stderr(self) -> str:
        return "" if self.proc.poll() is None or not self.proc.stderr else self.proc.stderr.read()

    def stop(self) -> None:
        """Kill the follower's process group and reap it."""
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)


@pytest.fixture
def follower(idle_pipeline: Pipeline, tmp_path: Path) -> Iterator[Follower]:
    """A following watcher on the idle pipeline's database (start a worker to feed it)."""
    f = Follower(idle_pipeline, tmp_path)
    try:
        yield f
    finally:
        f.stop()


def _write_threads(p: Pipeline, writer: int, count: int) -> None:
    for i in range(count):
        thread_id = f"t-{writer}-{i}"
        fields = {"thread_id": thread_id, "ticket": "TCK-1", "title": "t", "body": "b"}
        assert p.run("open_thread", actor="agent", **fields).status == "applied"
        assert p.run("add_post", thread_id=thread_id, body="more").status == "applied"


def test_watch_follow_prints_every_event_once_in_sequence_order(
    idle_pipeline: Pipeline, follower: Follower
) -> None:
    p = idle_pipeline
    writers = 4 if p.engine.dialect.name == "postgresql" else 2
    # A solo worker for each writer's commands and one for their events: commits interleave.
    with p.worker(concurrency=2 * writers), ThreadPoolExecutor(writers) as pool:
        for future in [pool.submit(_write_threads, p, w, 5) for w in range(writers)]:
            future.result()
        expected = queries.last_sequence(p.engine)
        assert expected == writers * 5 * 2
        assert follower.until(expected) == list(range(1, expected + 1))
        # One more event after the follower caught up: nothing earlier is printed again.
        assert p.run("add_post", thread_id="t-0-0", body="marker").status == "applied"
        assert follower.until(expected + 1) == list(range(1, expected + 2))
    ids = [e["event_id"] for e in follower.events]
    logged = [e["event_id"] for e in queries.events_after(p.engine, 0, limit=1000)]
    assert ids == logged and len(set(ids)) == len(ids)
