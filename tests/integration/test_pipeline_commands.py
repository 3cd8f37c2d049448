"""Every forum command end to end through Redis and a real worker: handled, then projected."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

from metawsm.services import queries
from metawsm.services.rebuild import rebuild
from metawsm.storage.models import ForumCommand, ForumEvent, ForumPost, ForumThread
from metawsm.storage.uow import unit_of_work
from tests.fixtures.pipeline import Pipeline


def _view(p: Pipeline, thread_id: str) -> dict[str, Any]:
    return dict(queries.thread_detail(p.engine, thread_id)["thread"])


def _open(p: Pipeline, thread_id: str = "t-1", **extra: Any) -> None:
    fields = {"thread_id": thread_id, "ticket": "TCK-1", "title": "Build fails", "body": "why?"}
    fields.update(extra)
    outcome = p.run("open_thread", actor="agent", **fields)
    assert outcome.status == "applied", outcome.reason


def _counts(p: Pipeline) -> tuple[int, int, int]:
    with unit_of_work(p.engine, readonly=True) as s:
        events = s.execute(select(func.count()).select_from(ForumEvent)).scalar_one()
        posts = s.execute(select(func.count()).select_from(ForumPost)).scalar_one()
        threads = s.execute(select(func.count()).select_from(ForumThread)).scalar_one()
    return events, posts, threads


def test_open_thread_is_handled_and_projected(pipeline: Pipeline) -> None:
    _open(pipeline, run_id="run-1", agent_name="alice", priority="high")
    pipeline.settle()
    view = _view(pipeline, "t-1")
    assert view["state"] == "new" and view["priority"] == "high"
    assert view["posts_count"] == 1 and view["last_post_by_type"] == "agent"
    assert view["run_id"] == "run-1" and view["agent_name"] == "alice"
    assert view["is_unanswered"] is True
    stats = queries.stats(pipeline.engine, ticket="TCK-1")
    assert stats == [
        {
            "ticket": "TCK-1",
            "run_id": "run-1",
            "state": "new",
            "priority": "high",
            "thread_count": 1,
        }
    ]


def test_post_answer_assign_priority_state_close_each_project(pipeline: Pipeline) -> None:
    _open(pipeline)
    steps: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        ("add_post", {"body": "more detail"}, {"posts_count": 2}),
        (
            "assign_thread",
            {"assignee_type": "human", "assignee_name": "hana"},
            {"assignee_name": "hana", "assignee_type": "human"},
        ),
        ("set_priority", {"priority": "urgent"}, {"priority": "urgent"}),
        ("change_state", {"to_state": "waiting_human"}, {"state": "waiting_human"}),
        ("answer_thread", {"body": "do X"}, {"state": "answered", "posts_count": 3}),
        ("close_thread", {"reason": "done"}, {"state": "closed"}),
    ]
    for command_type, payload, expected in steps:
        outcome = pipeline.run(command_type, thread_id="t-1", **payload)
        assert outcome.status == "applied", (command_type, outcome.reason)
        pipeline.settle()
        view = _view(pipeline, "t-1")
        assert {k: view[k] for k in expected} == expected, command_type
    assert _view(pipeline, "t-1")["closed_at"] is not None
    assert _view(pipeline, "t-1")["is_unanswered"] is False
    assert rebuild(pipeline.engine, check=True).differences == []


REJECTIONS = [
    (
        "add_post",
        {"thread_id": "t-missing", "body": "x"},
        "forum thread t-missing not found (no command accepted before this one opened it)",
    ),
    (
        "open_thread",
        {"thread_id": "t-1", "ticket": "TCK-1", "title": "dup", "body": "b"},
        "forum thread t-1 already exists",
    ),
    (
        "change_state",
        {"thread_id": "t-1", "to_state": "new"},
        "forum state transition answered -> new is not allowed",
    ),
]


@pytest.mark.parametrize(("command_type", "payload", "reason"), REJECTIONS)
def test_a_broken_rule_is_rejected_with_its_reason_and_changes_nothing(
    pipeline: Pipeline, command_type: str, payload: dict[str, Any], reason: str
) -> None:
    _open(pipeline)
    assert pipeline.run("answer_thread", thread_id="t-1", body="ok").status == "applied"
    pipeline.settle()
    before = _counts(pipeline), _view(pipeline, "t-1")
    outcome = pipeline.run(command_type, **payload)
    assert outcome.status == "rejected"
    assert outcome.reason == reason
    pipeline.settle()
    assert (_counts(pipeline), _view(pipeline, "t-1")) == before


@pytest.mark.parametrize(
    ("command_type", "payload"),
    [
        ("add_post", {"body": "late"}),
        ("answer_thread", {"body": "late"}),
        ("assign_thread", {"assignee_type": "agent", "assignee_name": "bob"}),
        ("set_priority", {"priority": "low"}),
        ("change_state", {"to_state": "waiting_human"}),
        ("change_state", {"to_state": "closed"}),
    ],
)
def test_closed_is_final_for_every_command(
    pipeline: Pipeline, command_type: str, payload: dict[str, Any]
) -> None:
    _open(pipeline)
    assert pipeline.run("close_thread", thread_id="t-1").status == "applied"
    pipeline.settle()
    before = _counts(pipeline)
    outcome = pipeline.run(command_type, thread_id="t-1", **payload)
    assert outcome.status == "rejected"
    assert outcome.reason == "forum thread t-1 is closed"
    assert _counts(pipeline) == before


def test_closing_a_closed_thread_is_an_idempotent_no_op(pipeline: Pipeline) -> None:
    _open(pipeline)
    assert pipeline.run("close_thread", thread_id="t-1").status == "applied"
    before = _counts(pipeline)
    assert pipeline.run("close_thread", thread_id="t-1").status == "applied"
    assert _counts(pipeline) == before


def test_event_sequences_are_global_and_per_thread(pipeline: Pipeline) -> None:
    _open(pipeline, "t-a")
    _open(pipeline, "t-b")
    pipeline.run("add_post", thread_id="t-a", body="2")
    with unit_of_work(pipeline.engine, readonly=True) as s:
        rows = s.execute(
            select(ForumEvent.sequence, ForumEvent.thread_id, ForumEvent.thread_seq).order_by(
                ForumEvent.sequence
            )
        ).all()
        statuses = set(s.execute(select(ForumCommand.status)).scalars())
    assert [r[0] for r in rows] == [1, 2, 3]
    assert [(r[1], r[2]) for r in rows] == [("t-a", 1), ("t-b", 1), ("t-a", 2)]
    assert statuses == {"applied"}


def test_unseen_and_unanswered_follow_who_spoke_last_and_the_seen_watermark(
    pipeline: Pipeline,
) -> None:
    _open(pipeline)  # an agent asks
    pipeline.settle()
    viewer = ("human", "hana")
    flags = lambda: queries.search(pipeline.engine, queries.ThreadFilter(), viewer=viewer)[0]  # noqa: E731
    assert (flags()["is_unseen"], flags()["is_unanswered"]) == (True, True)
    seen = queries.mark_seen(pipeline.engine, "t-1", *viewer)
    assert seen["last_seen_event_sequence"] == 1
    assert flags()["is_unseen"] is False
    assert (
        queries.mark_seen(pipeline.engine, "t-1", *viewer, sequence=0)["last_seen_event_sequence"]
        == 1
    )
    pipeline.run("add_post", actor="human", thread_id="t-1", body="on it")
    pipeline.settle()
    assert (flags()["is_unseen"], flags()["is_unanswered"]) == (True, False)
    pipeline.run("add_post", actor="agent", thread_id="t-1", body="still broken")
    pipeline.settle()
    assert flags()["is_unanswered"] is True
    unanswered = queries.search(pipeline.engine, queries.ThreadFilter(), queue="unanswered")
    assert [t["thread_id"] for t in unanswered] == ["t-1"]
