"""The commands that were local-only, now over the API (issue 15 item 4): ``run show``,
``run create``, ``run iterate``, ``run agent-status``, ``forum seen``, ``dlq purge``, and the
refusal of typed actor flags naming someone else than the token.

Each command is a process whose environment holds the API's URL and a token and nothing else
of metawsm (tests/integration/test_cli_api_story.py): a command that opened the database would
fail. The API serves a real migrated database with a worker in the test process.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from metawsm.errors import EXIT_FAILED, EXIT_USAGE
from metawsm.messages.common import Actor
from metawsm.services import deadletters, record_reads
from metawsm.storage.dbapi import on_connection
from metawsm.storage.engine import connect
from tests.fixtures.api import issue_token, serving
from tests.fixtures.pipeline import Pipeline
from tests.integration.test_cli_api_story import BRIEF, api_env, ledger, ok_json, run


@pytest.fixture
def api_url(pipeline: Pipeline) -> Iterator[str]:
    """The API over the pipeline's database and Redis."""
    with serving(pipeline.container) as (url, _):
        yield url


def recorded(p: Pipeline, run_id: str) -> dict[str, Any]:
    """What ``run show --json`` prints locally: the run's row with its history."""
    with connect(p.engine) as connection, connection.begin():
        db = on_connection(connection)
        row = record_reads.run_rows(db, run_id)[0]
        row["history"] = record_reads.run_history(db, run_id)
    return row


def refused(result: Any, rule: str) -> None:
    """The command was refused by the API's role rule ``rule`` (exit 1; with ``--json`` the
    error on stdout too)."""
    assert result.returncode == EXIT_FAILED, (result.stdout, result.stderr)
    assert "forbidden" in result.stderr, result.stderr
    if result.stdout:
        error = json.loads(result.stdout)["error"]
        assert (error["code"], error["rule"]) == ("forbidden", rule), error


def test_run_create_show_iterate_and_agent_status_over_the_api(
    pipeline: Pipeline, api_url: str, tmp_path: Path
) -> None:
    p = pipeline
    operator = api_env(api_url, issue_token(p.engine, "operator", "operator-1"), tmp_path)
    created = ok_json(
        run(operator, tmp_path, "run", "create", "--mode", "bootstrap", "--ticket", "TCK-9",
            "--agent", "alice", "--agent", "bob", "--goal", "g", "--scope", "s",
            "--done-criteria", "tests pass", "--constraints", "c", "--json")
    )  # fmt: skip
    run_id = created["run_id"]
    assert created == recorded(p, run_id)
    assert created["brief"]["done_criteria"] == "tests pass"
    assert [h["to_status"] for h in created["history"]] == ["planning", "running"]

    shown = ok_json(run(operator, tmp_path, "run", "show", "--run-id", run_id, "--json"))
    assert shown == recorded(p, run_id)
    text = run(operator, tmp_path, "run", "show", "--run-id", run_id)
    assert text.returncode == 0, text.stderr
    assert f"run={run_id} status=running mode=bootstrap tickets=TCK-9 epoch=1" in text.stdout
    assert "  done_criteria: tests pass" in text.stdout and "history:" in text.stdout
    missing = run(operator, tmp_path, "run", "show", "--run-id", "run-nope", "--json")
    assert missing.returncode == EXIT_FAILED and "run-nope" in missing.stderr, missing.stderr

    agent = api_env(
        api_url, issue_token(p.engine, "agent", "alice", run_id), tmp_path, RUN_ID=run_id,
        AGENT_NAME="alice",
    )  # fmt: skip
    before = ledger(p)
    refused(run(agent, tmp_path, "run", "create", "--ticket", "T", "--agent", "x", "--json"),
            "runs_are_steered_by_operators_and_humans")  # fmt: skip
    for_bob = run(agent, tmp_path, "run", "agent-status", "--agent-name", "bob",
                  "--status", "idle")  # fmt: skip
    refused(for_bob, "agents_act_for_themselves")
    iterated_by_agent = run(agent, tmp_path, "run", "iterate", "--feedback", "more")
    refused(iterated_by_agent, "runs_are_steered_by_operators_and_humans")
    assert ledger(p) == before

    own = run(agent, tmp_path, "run", "agent-status", "--status", "idle")
    assert own.returncode == 0, own.stderr
    assert own.stdout.strip() == f"agent alice idle; run {run_id} running"
    agents = {a["agent_name"]: a["status"] for a in recorded(p, run_id)["agents"]}
    assert agents == {"alice": "idle", "bob": "running"}

    iterated = run(operator, tmp_path, "run", "iterate", "--run-id", run_id, "--feedback", "docs")
    assert iterated.returncode == 0, iterated.stderr
    assert iterated.stdout.strip() == f"run {run_id} running; control epoch 2"
    assert recorded(p, run_id)["control_epoch"] == 2
    blank = run(operator, tmp_path, "run", "iterate", "--run-id", run_id, "--feedback", " ")
    assert blank.returncode == EXIT_USAGE, blank.stderr


def test_forum_seen_and_dlq_purge_over_the_api(
    pipeline: Pipeline, api_url: str, tmp_path: Path
) -> None:
    p = pipeline
    run_id = p.create_run(Actor(type="operator", name="op"), agents=["alice"], brief=BRIEF)
    operator = api_env(api_url, issue_token(p.engine, "operator", "operator-1"), tmp_path)
    agent = api_env(api_url, issue_token(p.engine, "agent", "alice", run_id), tmp_path)
    asked = ok_json(
        run(agent, tmp_path, "forum", "ask", "--ticket", "TCK-1", "--run-id", run_id,
            "--agent", "alice", "--title", "Which?", "--body", "Which database?", "--json")
    )  # fmt: skip
    thread_id = asked["thread_id"]

    mine = run(operator, tmp_path, "forum", "seen", "--thread-id", thread_id,
               "--viewer-type", "human", "--viewer-id", "operator-1", "--json")  # fmt: skip
    seen = ok_json(mine)
    assert seen["thread_id"] == thread_id and seen["last_seen_event_sequence"] > 0, seen
    by_agent = run(agent, tmp_path, "forum", "seen", "--thread-id", thread_id,
                   "--viewer-type", "agent", "--viewer-id", "alice")  # fmt: skip
    assert by_agent.returncode == 0, by_agent.stderr
    assert by_agent.stdout.startswith(f"seen {thread_id} up to "), by_agent.stdout
    other = run(operator, tmp_path, "forum", "seen", "--thread-id", thread_id,
                "--viewer-type", "human", "--viewer-id", "hana")  # fmt: skip
    assert other.returncode == EXIT_USAGE and "human/operator-1" in other.stderr, other.stderr

    for message_id in ("msg-a", "msg-b", "msg-c"):
        deadletters.dead_letter(
            p.engine,
            deadletters.Failure(message_id, "command", "forum.commands.add_post",
                                "forum.commands.add_post", {"x": 1}, "boom", None, 3),
        )  # fmt: skip
    before = ledger(p)
    refused(run(agent, tmp_path, "dlq", "purge", "msg-a", "--json"),
            "dead_letters_are_for_operators")  # fmt: skip
    neither = run(operator, tmp_path, "dlq", "purge")
    assert neither.returncode == EXIT_USAGE, neither.stderr
    assert ledger(p) == before
    assert ok_json(run(operator, tmp_path, "dlq", "purge", "msg-a", "--json")) == {"purged": 1}
    rest = run(operator, tmp_path, "dlq", "purge", "--all")
    assert (rest.returncode, rest.stdout.strip()) == (0, "purged 2"), rest.stderr
    statuses = {d["message_id"]: d["status"] for d in ledger(p)["dead"]}
    assert statuses == {"msg-a": "purged", "msg-b": "purged", "msg-c": "purged"}


def test_typed_actor_flags_naming_someone_else_are_refused_over_the_api(
    pipeline: Pipeline, api_url: str, tmp_path: Path
) -> None:
    p = pipeline
    run_id = p.create_run(Actor(type="operator", name="op"), agents=["alice"], brief=BRIEF)
    operator = api_env(api_url, issue_token(p.engine, "operator", "operator-1"), tmp_path)
    before = ledger(p)
    stop = run(operator, tmp_path, "run", "stop", "--run-id", run_id, "--actor-name", "bob")
    post = run(operator, tmp_path, "forum", "ask", "--ticket", "TCK-1", "--title", "t",
               "--body", "b", "--actor-type", "human")  # fmt: skip
    for result, flag in ((stop, "--actor-name bob"), (post, "--actor-type human")):
        assert result.returncode == EXIT_USAGE, (result.stdout, result.stderr)
        assert f"{flag}: with METAWSM_TOKEN set you act as operator/operator-1" in result.stderr
    assert ledger(p) == before
    same = run(operator, tmp_path, "run", "stop", "--run-id", run_id, "--actor-name", "Operator-1")
    assert same.returncode == 0, same.stderr
