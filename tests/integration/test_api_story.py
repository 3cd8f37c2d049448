"""The bootstrap story over the API alone: an agent asks for guidance and waits on the API, the
operator answers over it, and the agent's attempts to answer itself, close the run or redrive a
dead letter are refused (403) and change nothing."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from metawsm.messages.common import Actor
from metawsm.services import deadletters
from metawsm.storage.dbapi import on_connection
from metawsm.storage.engine import connect
from tests.fixtures.api import Api, api_for
from tests.fixtures.conditions import wait_until
from tests.fixtures.pipeline import Pipeline


@pytest.fixture
def api(pipeline: Pipeline) -> Iterator[Api]:
    """The API over the pipeline's database, Redis and worker."""
    with api_for(pipeline.container) as served:
        yield served


def _counts(pipeline: Pipeline) -> dict[str, Any]:
    with connect(pipeline.engine) as connection, connection.begin():
        db = on_connection(connection)
        return {
            "commands": db.scalar("SELECT count(*) FROM forum_commands"),
            "events": db.scalar("SELECT count(*) FROM forum_events"),
            "dead": db.rows("SELECT message_id, status FROM forum_dead_letters"),
            "runs": db.rows("SELECT run_id, status FROM runs"),
        }


def test_an_agent_waits_for_the_operators_answer_and_cannot_act_beyond_its_role(
    api: Api, pipeline: Pipeline
) -> None:
    run_id = pipeline.create_run(Actor(type="operator", name="op"), agents=["alice"])
    deadletters.dead_letter(
        pipeline.engine,
        deadletters.Failure("msg-poison", "command", "forum.commands.add_post",
                            "forum.commands.add_post", {"x": 1}, "boom", None, 3),
    )  # fmt: skip
    signal = {"schema_version": 1, "control_type": "guidance_request", "run_id": run_id,
              "agent_name": "alice", "question": "Which database?"}  # fmt: skip
    asked = api.agent.post(
        "/api/v1/control/signals", json={"run_id": run_id, "agent_name": "alice", "signal": signal}
    )
    assert asked.status_code == 200, asked.text
    command_id, thread_id = asked.json()["command_id"], asked.json()["thread_id"]
    answers: list[Any] = []
    waiter = threading.Thread(
        target=lambda: answers.append(
            api.as_token(_token(api)).get(
                f"/api/v1/control/signals/{command_id}/answer", params={"timeout_s": 60}
            )
        )
    )
    waiter.start()

    # The run moves to awaiting_guidance after the signal is applied (its own event): the
    # counts are compared from then on.
    wait_until(
        lambda: _counts(pipeline)["runs"] == [{"run_id": run_id, "status": "awaiting_guidance"}],
        30,
        "the run to await guidance",
    )
    before = _counts(pipeline)
    own = api.agent.post(f"/api/v1/forum/threads/{thread_id}/answer", json={"body": "SQLite"})
    close = api.agent.post(f"/api/v1/runs/{run_id}/close", json={})
    redrive = api.agent.post("/api/v1/dead-letters/msg-poison/redrive")
    assert [r.status_code for r in (own, close, redrive)] == [403, 403, 403]
    assert {r.json()["code"] for r in (own, close, redrive)} == {"forbidden"}
    assert _counts(pipeline) == before
    assert not answers  # still waiting

    answered = api.operator.post(
        f"/api/v1/forum/threads/{thread_id}/answer", json={"body": "PostgreSQL"}
    )
    assert answered.status_code == 200, answered.text
    waiter.join(30)
    wait_until(lambda: answers, 5, "the waiting request to return")
    assert answers[0].status_code == 200, answers[0].text
    got = answers[0].json()
    assert (got["answer"], got["answered_by"]) == ("PostgreSQL", "operator/operator-1")


def _token(api: Api) -> str:
    return str(api.agent.headers["Authorization"]).removeprefix("Bearer ")
