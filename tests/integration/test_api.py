"""The HTTP API on a real uvicorn server over a real database, Redis and Celery worker: tokens,
writes with their waits and idempotency keys, reads equal to the CLI's, errors as JSON."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from metawsm.api.state import ApiOptions
from metawsm.bootstrap import build
from metawsm.errors import SchemaNotAtHead
from metawsm.messages.common import Actor
from metawsm.services import queries, record_reads, thread_reads
from metawsm.services.thread_reads import ThreadFilter
from metawsm.storage.dbapi import on_connection
from metawsm.storage.engine import connect
from tests.fixtures.api import Api, api_for, client, serving
from tests.fixtures.database import NO_BROKER_URL, settings_for
from tests.fixtures.pipeline import Pipeline

THREADS = "/api/v1/forum/threads"


@pytest.fixture
def api(pipeline: Pipeline) -> Iterator[Api]:
    """The API over the pipeline's database, Redis and worker; alice works on TCK-1 (agents
    write only on the tickets of their runs)."""
    pipeline.create_run(Actor(type="operator", name="op"), agents=["alice"], tickets=["TCK-1"])
    with api_for(pipeline.container) as served:
        yield served


def _open(
    c: httpx.Client, thread_id: str, params: dict[str, str] | None = None, **fields: Any
) -> httpx.Response:
    body = {"thread_id": thread_id, "ticket": "TCK-1", "title": "How?", "body": "Which way?"}
    return c.post(THREADS, params=params or {"wait": "projected"}, json={**body, **fields})


def _commands(pipeline: Pipeline) -> int:
    with connect(pipeline.engine) as connection, connection.begin():
        return int(on_connection(connection).scalar("SELECT count(*) FROM forum_commands") or 0)


def test_health_and_readiness_need_no_token_and_everything_else_does(api: Api) -> None:
    assert api.anonymous.get("/api/v1/health").json()["status"] == "ok"
    ready = api.anonymous.get("/api/v1/readiness")
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"ready": True, "database": "ok", "stream": "ok"}
    for path in (THREADS, "/api/v1/runs", "/api/v1/events", "/api/v1/dead-letters"):
        refused = api.anonymous.get(path)
        assert refused.status_code == 401, path
        assert refused.json()["code"] == "unauthenticated"
        assert refused.json()["rule"] == "missing"
    wrong = api.as_token("mwsm_" + "x" * 43).get(THREADS)
    assert wrong.status_code == 401
    assert wrong.json()["rule"] == "unknown"
    assert "x" * 43 not in wrong.text  # the token is never echoed


def test_a_write_waits_until_applied_and_its_actor_is_the_tokens(
    api: Api, pipeline: Pipeline
) -> None:
    opened = _open(api.agent, "th-1")
    assert opened.status_code == 200, opened.text
    outcome = opened.json()
    assert outcome["status"] == "applied"
    assert outcome["command_type"] == "open_thread"
    assert outcome["thread_id"] == "th-1"
    detail = api.operator.get(f"{THREADS}/th-1").json()
    assert detail["thread"]["opened_by_type"] == "agent"
    assert detail["thread"]["opened_by_name"] == "alice"
    spoofed = _open(api.agent, "th-2", actor_type="operator", actor_name="boss")
    assert spoofed.status_code == 422
    assert spoofed.json()["field"] in ("body.actor_type", "body.actor_name")


def test_wait_none_answers_202_accepted_and_projected_waits_for_the_read_models(
    api: Api, pipeline: Pipeline
) -> None:
    accepted = api.agent.post(
        THREADS,
        params={"wait": "none"},
        json={"thread_id": "th-none", "ticket": "TCK-1", "title": "t", "body": "b"},
    )
    assert accepted.status_code == 202, accepted.text
    assert accepted.json()["status"] == "accepted"
    projected = api.agent.post(
        f"{THREADS}/th-none/posts", params={"wait": "projected"}, json={"body": "more"}
    )
    assert projected.status_code == 200, projected.text
    detail = api.agent.get(f"{THREADS}/th-none").json()
    assert [p["body"] for p in detail["posts"]] == ["b", "more"]


def test_the_same_idempotency_key_returns_the_same_outcome_and_another_command_is_409(
    api: Api, pipeline: Pipeline
) -> None:
    key = {"Idempotency-Key": "cmd-key-1"}
    first = api.agent.post(
        THREADS,
        headers=key,
        json={"thread_id": "th-k", "ticket": "TCK-1", "title": "t", "body": "b"},
    )
    again = api.agent.post(
        THREADS,
        headers=key,
        json={"thread_id": "th-k", "ticket": "TCK-1", "title": "t", "body": "b"},
    )
    assert first.status_code == again.status_code == 200
    assert first.json()["command_id"] == again.json()["command_id"] == "cmd-key-1"
    assert again.json() == first.json()
    before = _commands(pipeline)
    other = api.agent.post(
        THREADS,
        headers=key,
        json={"thread_id": "th-k", "ticket": "TCK-1", "title": "t", "body": "c"},
    )
    assert other.status_code == 409
    assert other.json()["code"] == "idempotency_key_reused"
    assert other.json()["field"] == "Idempotency-Key"
    assert _commands(pipeline) == before


def test_invalid_input_is_422_naming_the_field_and_the_rule_and_changes_nothing(
    api: Api, pipeline: Pipeline
) -> None:
    before = _commands(pipeline)
    blank = _open(api.agent, "th-bad", title="   ")
    assert blank.status_code == 422
    assert blank.json()["code"] == "invalid_input"
    assert blank.json()["field"] == "body.title"
    bad_priority = _open(api.agent, "th-bad", priority="soon")
    assert bad_priority.status_code == 422
    assert bad_priority.json()["field"] == "body.priority"
    assert bad_priority.json()["rule"]
    bad_wait = api.agent.post(
        THREADS, params={"wait": "later"}, json={"ticket": "T", "title": "t", "body": "b"}
    )
    assert bad_wait.status_code == 422
    assert bad_wait.json()["field"] == "query.wait"
    assert _commands(pipeline) == before


def test_an_agent_may_not_answer_and_nothing_is_written(api: Api, pipeline: Pipeline) -> None:
    assert _open(api.agent, "th-a").status_code == 200
    before = _commands(pipeline)
    refused = api.agent.post(f"{THREADS}/th-a/answer", json={"body": "I answer myself"})
    assert refused.status_code == 403
    assert refused.json()["code"] == "forbidden"
    assert refused.json()["rule"] == "agents_do_not_answer"
    assert _commands(pipeline) == before
    answered = api.operator.post(
        f"{THREADS}/th-a/answer", params={"wait": "projected"}, json={"body": "do X"}
    )
    assert answered.status_code == 200, answered.text
    assert api.operator.get(f"{THREADS}/th-a").json()["thread"]["state"] == "answered"


def test_a_rejected_command_is_409_with_its_outcome(api: Api) -> None:
    rejected = api.agent.post(f"{THREADS}/th-missing/posts", json={"body": "hello?"})
    assert rejected.status_code == 409, rejected.text
    body = rejected.json()
    assert body["code"] == "rejected"
    assert body["outcome"]["status"] == "rejected"
    assert body["message"] == body["outcome"]["reason"]


def test_reads_return_what_the_cli_reads_return(api: Api, pipeline: Pipeline) -> None:
    assert _open(api.agent, "th-r", priority="urgent").status_code == 200
    triage = api.operator.post(
        f"{THREADS}/th-r/state", params={"wait": "projected"}, json={"to_state": "triaged"}
    )
    assert triage.is_success, triage.text
    with connect(pipeline.engine) as connection, connection.begin():
        db = on_connection(connection)
        listed = thread_reads.list_threads(db, ThreadFilter(ticket="TCK-1"))
        detail = thread_reads.thread_detail(db, "th-r")
        events = thread_reads.events_after(db, 0, ticket="TCK-1")
    assert api.agent.get(THREADS, params={"ticket": "TCK-1"}).json() == {"threads": listed}
    assert api.agent.get(f"{THREADS}/th-r").json() == detail
    got = api.agent.get("/api/v1/events", params={"ticket": "TCK-1"}).json()
    assert got == {"events": events, "next_cursor": events[-1]["sequence"]}
    after = api.agent.get("/api/v1/events", params={"cursor": events[-1]["sequence"]}).json()
    assert after == {"events": [], "next_cursor": events[-1]["sequence"]}
    found = api.agent.get("/api/v1/forum/search", params={"query": "which way"}).json()
    assert [t["thread_id"] for t in found["threads"]] == ["th-r"]
    stats = api.agent.get("/api/v1/forum/stats", params={"ticket": "TCK-1"}).json()
    assert stats == {"stats": queries.stats(pipeline.engine, ticket="TCK-1")}
    assert [(s["state"], s["thread_count"]) for s in stats["stats"]] == [("triaged", 1)]


def test_queues_and_seen_are_the_callers(api: Api) -> None:
    assert _open(api.agent, "th-q", params={"wait": "projected"}).status_code == 200
    unseen = api.operator.get("/api/v1/forum/queues/unseen").json()["threads"]
    assert [t["thread_id"] for t in unseen] == ["th-q"]
    marked = api.operator.post(f"{THREADS}/th-q/seen", json={}).json()["seen"]
    assert (marked["viewer_type"], marked["viewer_id"]) == ("human", "operator-1")
    assert api.operator.get("/api/v1/forum/queues/unseen").json()["threads"] == []
    unanswered = api.operator.get("/api/v1/forum/queues/unanswered").json()["threads"]
    assert [t["thread_id"] for t in unanswered] == ["th-q"]
    assert api.operator.get("/api/v1/forum/queues/everything").status_code == 422


def test_runs_snapshot_why_and_signals(api: Api, pipeline: Pipeline) -> None:
    run_id = pipeline.create_run(Actor(type="operator", name="op"), agents=["alice"])
    with connect(pipeline.engine) as connection, connection.begin():
        rows = record_reads.run_rows(on_connection(connection))
    assert api.agent.get("/api/v1/runs").json() == {"runs": rows}
    assert api.agent.get("/api/v1/runs", params={"ticket": "tck-1"}).json() == {"runs": rows}
    assert api.agent.get("/api/v1/runs", params={"status": "closed"}).json() == {"runs": []}
    snap = api.agent.get(f"/api/v1/runs/{run_id}").json()["run"]
    assert snap["run_id"] == run_id
    assert api.agent.get("/api/v1/runs/nope").status_code == 404
    why = api.operator.get(f"/api/v1/runs/{run_id}/why").json()
    assert why["unmet"]
    signal = {
        "run_id": run_id,
        "agent_name": "alice",
        "signal": {
            "schema_version": 1,
            "control_type": "guidance_request",
            "run_id": run_id,
            "agent_name": "alice",
            "question": "Which database?",
        },
    }
    asked = api.agent.post("/api/v1/control/signals", json=signal)
    assert asked.status_code == 200, asked.text
    command_id = asked.json()["command_id"]
    none_yet = api.agent.get(
        f"/api/v1/control/signals/{command_id}/answer", params={"timeout_s": 0.3}
    )
    assert none_yet.status_code == 504
    assert none_yet.json()["code"] == "wait_timeout"
    thread_id = asked.json()["thread_id"]
    own = api.agent.post(f"{THREADS}/{thread_id}/answer", json={"body": "SQLite"})
    assert own.status_code == 403
    assert api.operator.post(f"{THREADS}/{thread_id}/answer", json={"body": "SQLite"}).is_success
    answer = api.agent.get(f"/api/v1/control/signals/{command_id}/answer").json()
    assert answer["answer"] == "SQLite"
    assert answer["answered_by"] == "operator/operator-1"


def test_dead_letters_are_for_operators_only(api: Api) -> None:
    refused = api.agent.get("/api/v1/dead-letters")
    assert refused.status_code == 403
    assert refused.json()["rule"] == "dead_letters_are_for_operators"
    assert api.agent.post("/api/v1/dead-letters/m-1/redrive").status_code == 403
    assert api.operator.get("/api/v1/dead-letters").json() == {"dead_letters": []}
    missing = api.operator.get("/api/v1/dead-letters/m-1")
    assert missing.status_code == 404
    assert missing.json()["code"] == "not_found"


def test_unknown_paths_are_404_and_oversized_bodies_413(api: Api) -> None:
    assert api.agent.get(f"{THREADS}/none-such").json()["code"] == "not_found"
    assert api.agent.get("/api/v1/nothing").status_code == 404
    huge = api.agent.post(
        THREADS, json={"ticket": "T", "title": "t", "body": "x" * (2 * 1024 * 1024)}
    )
    assert huge.status_code == 413
    assert huge.json()["code"] == "request_too_large"


def test_the_openapi_document_has_the_contract_rules(api: Api) -> None:
    doc = api.anonymous.get("/api/v1/openapi.json").json()
    assert "/api/v1/events/stream" in doc["paths"]
    schemas = doc["components"]["schemas"]
    assert schemas["OpenThreadBody"]["additionalProperties"] is False
    assert set(schemas["Priority"]["enum"]) == {"low", "normal", "high", "urgent"}


def test_a_database_that_is_down_is_503_and_health_still_answers() -> None:
    container = build(settings_for("postgresql://postgres@127.0.0.1:1/metawsm"))
    try:
        with serving(container) as (url, _), client(url, "mwsm_" + "a" * 43) as c:
            assert c.get("/api/v1/health").status_code == 200
            ready = c.get("/api/v1/readiness")
            assert ready.status_code == 503
            assert ready.json()["ready"] is False
            assert "127.0.0.1" in ready.json()["database"]
            down = c.get(THREADS)
            assert down.status_code == 503
            assert down.json()["code"] == "database_unavailable"
            assert down.headers["Retry-After"]
    finally:
        container.close()


def test_runs_are_steered_by_operators_and_a_run_with_unmet_gates_does_not_close(
    api: Api, pipeline: Pipeline
) -> None:
    run_id = pipeline.create_run(Actor(type="operator", name="op"), agents=["alice"])
    refused = api.agent.post(f"/api/v1/runs/{run_id}/close", json={})
    assert refused.status_code == 403
    assert refused.json()["rule"] == "runs_are_steered_by_operators_and_humans"
    assert api.agent.post(f"/api/v1/runs/{run_id}/stop").status_code == 403
    not_ready = api.operator.post(f"/api/v1/runs/{run_id}/close", json={"dry_run": True})
    assert not_ready.status_code == 409
    assert not_ready.json()["closed"] is False
    assert not_ready.json()["unmet"]
    stopped = api.operator.post(f"/api/v1/runs/{run_id}/stop")
    assert stopped.status_code == 200, stopped.text
    assert stopped.json() == {"run_id": run_id, "status": "stopped"}
    assert api.operator.post(f"/api/v1/runs/{run_id}/resume").json()["status"] != "stopped"


def test_an_address_with_too_many_failed_authentications_gets_429(api: Api) -> None:
    wrong = api.as_token("mwsm_" + "w" * 43)
    statuses = [wrong.get(THREADS).status_code for _ in range(12)]
    assert statuses[0] == 401
    assert statuses[-1] == 429
    limited = wrong.get(THREADS)
    assert limited.json()["code"] == "too_many_failures"
    assert int(limited.headers["Retry-After"]) >= 1
    wrong.close()


def test_cors_is_off_unless_origins_are_named(api: Api, pipeline: Pipeline) -> None:
    origin = {"Origin": "https://app.example.org"}
    assert "access-control-allow-origin" not in api.agent.get(THREADS, headers=origin).headers
    options = ApiOptions(cors_origins=("https://app.example.org",))
    with serving(pipeline.container, options) as (url, _), client(url) as c:
        preflight = c.options(
            THREADS,
            headers={**origin, "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "authorization,idempotency-key"},
        )  # fmt: skip
        assert preflight.status_code == 200
        assert preflight.headers["access-control-allow-origin"] == "https://app.example.org"


def test_metawsm_api_refuses_a_database_not_at_head_with_exit_3(empty_sqlite_url: str) -> None:
    import sqlite3

    from click.testing import CliRunner

    from metawsm.cli import cli

    sqlite3.connect(empty_sqlite_url.removeprefix("sqlite:///")).close()  # a file, no schema
    env = {"METAWSM_DATABASE_URL": empty_sqlite_url, "METAWSM_BROKER_URL": NO_BROKER_URL}
    result = CliRunner().invoke(cli, ["api", "--port", "1"], env=env)
    assert isinstance(result.exception, SchemaNotAtHead), result.output
    assert result.exception.exit_code == 3  # what metawsm.cli.main exits with


def test_me_names_the_tokens_identity(api: Api) -> None:
    me = api.agent.get("/api/v1/me").json()
    assert (me["actor_type"], me["actor_name"], me["run_id"]) == ("agent", "alice", None)
    assert me["token_id"]
    assert api.anonymous.get("/api/v1/me").status_code == 401


def test_bad_run_and_purge_bodies_are_422_naming_the_field_and_change_nothing(
    api: Api, pipeline: Pipeline
) -> None:
    runs_before = api.operator.get("/api/v1/runs").json()["runs"]
    no_agent = api.operator.post("/api/v1/runs", json={"tickets": ["T-1"], "agents": []})
    assert no_agent.status_code == 422 and no_agent.json()["field"] == "body.agents", no_agent.text
    bad_mode = api.operator.post(
        "/api/v1/runs", json={"tickets": ["T-1"], "agents": ["a"], "mode": "fast"}
    )
    assert bad_mode.status_code == 422 and bad_mode.json()["field"] == "body.mode", bad_mode.text
    no_brief = api.operator.post(
        "/api/v1/runs", json={"tickets": ["T-1"], "agents": ["a"], "mode": "bootstrap"}
    )
    assert no_brief.status_code == 409 and no_brief.json()["code"] == "rejected", no_brief.text
    assert api.operator.get("/api/v1/runs").json()["runs"] == runs_before
    for body in ({}, {"message_id": "m", "all": True}):
        purge = api.operator.post("/api/v1/dead-letters/purge", json=body)
        assert purge.status_code == 422, purge.text
        assert purge.json()["rule"] == "one_of_message_id_or_all"
    status = api.operator.post("/api/v1/runs/nope/agents/alice/status", json={"status": "asleep"})
    assert status.status_code == 422 and status.json()["field"] == "body.status", status.text
