"""The bootstrap story with the command line in API mode only (issue 15, "Done when").

The agent's and the operator's ``metawsm`` are processes whose environment holds the API's URL
and a token and nothing else of metawsm (no database, no broker: asserted), run from a directory
with no ``.metawsm`` above it, so a command that opened the database would fail. The stack is
real: a migrated database, Redis, the production worker process and the API on a free port.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import metawsm
from metawsm.errors import EXIT_FAILED, EXIT_GUIDANCE_NEEDED, EXIT_UNREACHABLE, EXIT_USAGE
from metawsm.messages.common import Actor
from metawsm.services import deadletters, runs
from metawsm.storage.dbapi import on_connection
from metawsm.storage.engine import connect
from tests.fixtures.api import issue_token, serving
from tests.fixtures.conditions import wait_until
from tests.fixtures.pipeline import Pipeline

SOURCE_ROOT = str(Path(metawsm.__file__).resolve().parents[1])
BRIEF = runs.BriefInput(goal="g", scope="s", done_criteria="tests pass", constraints="c")
NOT_FOR_AN_API_CLIENT = ("METAWSM_DATABASE_URL", "METAWSM_BROKER_URL", "METAWSM_REDIS_URL")


@pytest.fixture
def api_url(process_pipeline: Pipeline) -> Iterator[str]:
    """The API over the pipeline's database and Redis, its worker a separate process."""
    with serving(process_pipeline.container) as (url, _):
        yield url


def api_env(url: str, token: str, home: Path, **metawsm_vars: str) -> dict[str, str]:
    """The environment of a host that has only the API's URL and a token."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": SOURCE_ROOT,
        "HOME": str(home),
        "METAWSM_API_URL": url,
        "METAWSM_TOKEN": token,
        **{f"METAWSM_{k}": v for k, v in metawsm_vars.items()},
    }
    assert not [name for name in env if name in NOT_FOR_AN_API_CLIENT]
    return env


def start(env: dict[str, str], cwd: Path, *args: str) -> subprocess.Popen[str]:
    """``metawsm ARGS`` as a process of that host."""
    return subprocess.Popen(
        [sys.executable, "-m", "metawsm", *args],
        env=env,
        cwd=cwd,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def run(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``metawsm ARGS`` to its end."""
    return subprocess.run(
        [sys.executable, "-m", "metawsm", *args],
        env=env,
        cwd=cwd,
        text=True,
        capture_output=True,
        timeout=120,
    )


def read_lines_until(
    process: subprocess.Popen[str], found: Callable[[str], bool], timeout_s: float
) -> list[str]:
    """The lines ``process`` prints up to the first one ``found`` accepts (a reader thread:
    a blocked read cannot hang the test past ``timeout_s``)."""
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout
    threading.Thread(target=lambda: [lines.put(line) for line in stdout], daemon=True).start()
    seen: list[str] = []
    deadline = time.monotonic() + timeout_s
    while not seen or not found(seen[-1]):
        seen.append(lines.get(timeout=max(deadline - time.monotonic(), 0.01)))
    return seen


def ok_json(result: subprocess.CompletedProcess[str]) -> Any:
    """The JSON on stdout of a command that succeeded."""
    assert result.returncode == 0, (result.returncode, result.stdout, result.stderr)
    return json.loads(result.stdout)


def ledger(p: Pipeline) -> dict[str, Any]:
    """What a refused command must not change."""
    with connect(p.engine) as connection, connection.begin():
        db = on_connection(connection)
        return {
            "commands": db.scalar("SELECT count(*) FROM forum_commands"),
            "events": db.scalar("SELECT count(*) FROM forum_events"),
            "dead": db.rows("SELECT message_id, status FROM forum_dead_letters"),
            "runs": db.rows("SELECT run_id, status FROM runs"),
        }


def test_the_bootstrap_story_with_the_cli_over_the_api_only(
    process_pipeline: Pipeline, api_url: str, tmp_path: Path
) -> None:
    p = process_pipeline
    run_id = p.create_run(Actor(type="operator", name="op"), agents=["alice"], brief=BRIEF)
    deadletters.dead_letter(
        p.engine,
        deadletters.Failure("msg-poison", "command", "forum.commands.add_post",
                            "forum.commands.add_post", {"x": 1}, "boom", None, 3),
    )  # fmt: skip
    agent = api_env(
        api_url, issue_token(p.engine, "agent", "alice", run_id), tmp_path, RUN_ID=run_id,
        AGENT_NAME="alice",
    )  # fmt: skip
    operator = api_env(api_url, issue_token(p.engine, "operator", "operator-1"), tmp_path)

    status = ok_json(run(agent, tmp_path, "status", "--json"))  # METAWSM_RUN_ID: its run
    assert [r["run_id"] for r in status["runs"]] == [run_id]
    assert f"Run: {run_id}" in run(agent, tmp_path, "status").stdout
    # Only the stream can wake it within the test: the refresh is 10 minutes away.
    watching = start(operator, tmp_path, "watch", "--run-id", run_id, "--refresh", "10m", "--json")
    following = start(operator, tmp_path, "forum", "events", "--follow", "--json",
                      "--run-id", run_id)  # fmt: skip
    waiting = start(
        agent, tmp_path, "forum", "signal", "--type", "guidance_request",
        "--question", "Which database?", "--wait", "--timeout", "2m", "--json",
    )  # fmt: skip
    try:
        alerts, _ = watching.communicate(timeout=60)
        assert watching.returncode == EXIT_GUIDANCE_NEEDED, alerts
        assert json.loads(alerts.splitlines()[-1])["event"] == "guidance_needed"
        threads = wait_until(
            lambda: ok_json(run(operator, tmp_path, "forum", "list", "--run-id", run_id, "--json"))[
                "threads"
            ],
            60,
            "the agent's control thread to show in forum list over the API",
        )
        thread_id = threads[0]["thread_id"]
        detail = ok_json(run(operator, tmp_path, "forum", "thread", "--thread-id", thread_id,
                             "--json"))  # fmt: skip
        assert "Which database?" in json.dumps(detail["events"]) + json.dumps(detail["posts"])

        # The run moves to awaiting_guidance after the signal is applied (its own event):
        # the ledger is compared from then on.
        wait_until(
            lambda: ledger(p)["runs"] == [{"run_id": run_id, "status": "awaiting_guidance"}],
            30,
            "the run to await guidance",
        )
        before = ledger(p)
        own = run(agent, tmp_path, "forum", "answer", "--thread-id", thread_id,
                  "--body", "SQLite", "--json")  # fmt: skip
        close = run(agent, tmp_path, "close", "--run-id", run_id, "--json")
        redrive = run(agent, tmp_path, "dlq", "redrive", "msg-poison", "--json")
        for refused in (own, close, redrive):
            assert refused.returncode == EXIT_FAILED, (refused.stdout, refused.stderr)
            assert json.loads(refused.stdout)["error"]["code"] == "forbidden", refused.stdout
            assert "forbidden" in refused.stderr
        rules = [json.loads(r.stdout)["error"]["rule"] for r in (own, close, redrive)]
        assert rules[0] == "agents_do_not_answer" and all(rules), rules
        assert ledger(p) == before
        assert waiting.poll() is None, "the agent's wait returned before any answer"

        answered = run(operator, tmp_path, "forum", "answer", "--thread-id", thread_id,
                       "--body", "PostgreSQL", "--json")  # fmt: skip
        assert ok_json(answered)["status"] == "applied"
        shown = run(agent, tmp_path, "command", "show", ok_json(answered)["command_id"], "--json")
        assert ok_json(shown) == ok_json(answered)
        out, err = waiting.communicate(timeout=60)
        followed = read_lines_until(following, lambda line: "PostgreSQL" in line, 60)
        events = [json.loads(line) for line in followed]
        assert [e["sequence"] for e in events] == sorted({e["sequence"] for e in events})
        assert "forum.control.signal" in {e["event_type"] for e in events}
        following.send_signal(signal.SIGINT)
        assert following.wait(30) == 0  # Ctrl-C ends a follow quietly
    finally:
        for process in (waiting, watching, following):
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert waiting.returncode == 0, (out, err)
    got = json.loads(out)
    assert (got["answer"], got["answered_by"]) == ("PostgreSQL", "operator/operator-1")

    listed = ok_json(run(operator, tmp_path, "run", "list", "--json"))["runs"]
    assert [r["run_id"] for r in listed] == [run_id]
    why = ok_json(run(operator, tmp_path, "run", "why", "--run-id", run_id, "--json"))
    assert why["unmet"], why  # no completion nor validation yet: the gates say what is missing
    shown = ok_json(run(operator, tmp_path, "dlq", "show", "msg-poison", "--json"))
    assert shown["message_id"] == "msg-poison"
    refused = run(agent, tmp_path, "run", "stop", "--run-id", run_id)
    assert refused.returncode == EXIT_FAILED and "forbidden" in refused.stderr, refused.stderr
    stopped = run(operator, tmp_path, "run", "stop", "--run-id", run_id)
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.strip() in (f"run {run_id} stopping", f"run {run_id} stopped")


def test_api_mode_without_a_token_or_a_server_says_so(tmp_path: Path) -> None:
    env = api_env("http://127.0.0.1:9", "mwsm_x", tmp_path)
    del env["METAWSM_TOKEN"]
    no_token = run(env, tmp_path, "forum", "list", "--json")
    assert no_token.returncode == EXIT_USAGE
    assert "METAWSM_TOKEN" in no_token.stderr
    env["METAWSM_TOKEN"] = "mwsm_x"
    away = run(env, tmp_path, "forum", "list", "--json")
    assert away.returncode == EXIT_UNREACHABLE, away.stderr
    assert "http://127.0.0.1:9" in away.stderr and "mwsm_x" not in away.stderr


def test_the_formerly_local_commands_go_to_the_api_in_api_mode(tmp_path: Path) -> None:
    env = api_env("http://127.0.0.1:9", "mwsm_x", tmp_path)
    for args in (
        ("forum", "seen", "--thread-id", "t", "--viewer-type", "human", "--viewer-id", "h"),
        ("run", "show", "--run-id", "r"),
        ("dlq", "purge", "--all"),
    ):
        away = run(env, tmp_path, *args)
        assert away.returncode == EXIT_UNREACHABLE, (args, away.stderr)
        assert "http://127.0.0.1:9" in away.stderr and "does not work over" not in away.stderr
        assert "no metawsm database" not in away.stderr
