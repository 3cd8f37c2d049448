"""Role rules in the service layer (services/authorization.py, scope.py, the control handler).

Each test accepts commands as an :class:`Identity` through ``submit`` and applies them here, as a
worker would (no broker: ``direct_runtime``), on SQLite and PostgreSQL. A refusal must change
nothing: no ledger row, no event.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, text

from metawsm.bootstrap import message_bus
from metawsm.errors import Forbidden
from metawsm.identity import Identity
from metawsm.messages.commands import AnyCommand, parse_command
from metawsm.messages.common import Actor
from metawsm.runtime import Runtime
from metawsm.services import deadletters, gates, lifecycle, runs
from metawsm.services.delivery import apply_command
from metawsm.services.submit import make_command, submit
from metawsm.storage.dbapi import json_value
from tests.fixtures.database import settings_for
from tests.fixtures.pipeline import direct_runtime

OLGA = Identity("operator", "olga", token_id="tok-olga")
OSCAR = Identity("operator", "oscar")
HANA = Identity("human", "hana")
BUILDER = Identity("agent", "builder", token_id="tok-builder")
PLANNER = Identity("agent", "planner", token_id="tok-planner")
LOCAL_AGENT = Identity("agent", "builder")  # declared in a local shell, no token
SETUP = Actor(type="operator", name="setup")


@pytest.fixture
def rt(db_url: str, engine: Engine) -> Iterator[Runtime]:
    """A runtime that applies in this process and publishes nothing."""
    yield direct_runtime(engine, settings_for(db_url))


@pytest.fixture
def run_id(rt: Runtime) -> str:
    """A running run on TCK-1 with agents builder and planner."""
    return runs.create_run(
        rt, tickets=["TCK-1"], agents=["builder", "planner"], mode="run", brief=None, actor=SETUP
    )


def ledger(rt: Runtime, command_id: str) -> dict[str, Any] | None:
    with rt.engine.connect() as conn:
        row = (
            conn.execute(
                text(
                    "SELECT status, reason, payload, token_id FROM forum_commands"
                    " WHERE command_id = :c"
                ),
                {"c": command_id},
            )
            .mappings()
            .first()
        )
    if row is None:
        return None
    return {**row, "payload": json_value(row["payload"], rt.engine.dialect.name)}


def counts(rt: Runtime) -> tuple[int, int]:
    with rt.engine.connect() as conn:
        commands = conn.execute(text("SELECT COUNT(*) FROM forum_commands")).scalar_one()
        events = conn.execute(text("SELECT COUNT(*) FROM forum_events")).scalar_one()
    return int(commands), int(events)


def act(rt: Runtime, who: Identity, kind: str, **payload: Any) -> dict[str, Any]:
    """Accept ``kind`` as ``who`` (the request claims to be someone else) and apply it here;
    the ledger row after."""
    command = make_command(kind, payload, actor_type="system", actor_name="claimed-in-request")
    submit(rt, command, identity=who)
    row = ledger(rt, command.command_id)
    assert row is not None
    accepted: AnyCommand = parse_command(row["payload"])
    apply_command(rt, message_bus(), accepted)
    after = ledger(rt, command.command_id)
    assert after is not None
    return after


def refused(rt: Runtime, who: Identity, kind: str, **payload: Any) -> Forbidden:
    before = counts(rt)
    command = make_command(kind, payload, actor_type=who.actor_type, actor_name=who.actor_name)
    with pytest.raises(Forbidden) as caught:
        submit(rt, command, identity=who)
    assert counts(rt) == before, "a refused command must change nothing"
    assert caught.value.code == "forbidden" and str(caught.value).startswith("forbidden (")
    return caught.value


def signal(run_id: str, agent: str, kind: str, **fields: Any) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "agent_name": agent,
        "signal": {"run_id": run_id, "agent_name": agent, "control_type": kind, **fields},
    }


def open_thread(rt: Runtime, who: Identity, thread_id: str, ticket: str = "TCK-1") -> None:
    row = act(rt, who, "open_thread", thread_id=thread_id, ticket=ticket, title="t", body="b")
    assert row["status"] == "applied", row["reason"]


# --- the actor comes from the identity --------------------------------------------------------


def test_an_accepted_commands_actor_and_token_come_from_the_identity(
    rt: Runtime, run_id: str
) -> None:
    row = act(rt, BUILDER, "open_thread", thread_id="t-1", ticket="TCK-1", title="t", body="b")
    assert row["status"] == "applied", row["reason"]
    assert (row["payload"]["actor_type"], row["payload"]["actor_name"]) == ("agent", "builder")
    assert row["token_id"] == "tok-builder"
    with rt.engine.connect() as conn:
        actors = set(conn.execute(text("SELECT actor_type, actor_name FROM forum_events"
                                       " WHERE thread_id = 't-1'")).all())  # fmt: skip
    assert actors == {("agent", "builder")}


def test_a_local_identity_records_no_token(rt: Runtime, run_id: str) -> None:
    row = act(rt, OSCAR, "open_thread", thread_id="t-1", ticket="TCK-1", title="t", body="b")
    assert row["token_id"] is None and row["payload"]["actor_name"] == "oscar"


# --- what agents may not do -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "fields", "rule"),
    [
        ("answer_thread", {"body": "x"}, "agents_do_not_answer"),
        ("assign_thread", {"assignee_type": "human", "assignee_name": "h"}, "agents_do_not_triage"),
        ("change_state", {"to_state": "triaged"}, "agents_do_not_triage"),
        ("set_priority", {"priority": "urgent"}, "agents_do_not_triage"),
        ("close_thread", {}, "agents_do_not_close"),
    ],
)
def test_an_agent_may_not_answer_triage_or_close(
    rt: Runtime, run_id: str, kind: str, fields: dict[str, Any], rule: str
) -> None:
    open_thread(rt, BUILDER, "t-1")
    assert refused(rt, BUILDER, kind, thread_id="t-1", **fields).rule == rule


@pytest.mark.parametrize(
    ("kind", "fields"),
    [
        ("answer_thread", {"body": "x"}),
        ("assign_thread", {"assignee_type": "human", "assignee_name": "h"}),
        ("change_state", {"to_state": "triaged"}),
        ("set_priority", {"priority": "urgent"}),
        ("close_thread", {}),
    ],
)
@pytest.mark.parametrize("who", [OLGA, HANA], ids=["operator", "human"])
def test_operators_and_humans_answer_triage_and_close(
    rt: Runtime, run_id: str, kind: str, fields: dict[str, Any], who: Identity
) -> None:
    open_thread(rt, BUILDER, "t-1")
    row = act(rt, who, kind, thread_id="t-1", **fields)
    assert row["status"] == "applied", row["reason"]


def test_an_agent_posts_and_opens_threads_on_the_tickets_of_its_runs(
    rt: Runtime, run_id: str
) -> None:
    open_thread(rt, BUILDER, "t-1")
    assert act(rt, PLANNER, "add_post", thread_id="t-1", body="me too")["status"] == "applied"
    assert refused(rt, BUILDER, "open_thread", thread_id="t-2", ticket="TCK-OTHER",
                   title="t", body="b").rule == "outside_own_runs"  # fmt: skip
    open_thread(rt, OLGA, "t-3", ticket="TCK-OTHER")
    assert refused(rt, BUILDER, "add_post", thread_id="t-3", body="x").rule == "outside_own_runs"


def test_an_agent_in_no_run_may_not_write(rt: Runtime, run_id: str) -> None:
    stranger = Identity("agent", "stranger", token_id="tok-s")
    rule = refused(rt, stranger, "open_thread", thread_id="t-1", ticket="TCK-1", title="t",
                   body="b").rule  # fmt: skip
    assert rule == "outside_own_runs"


def test_a_post_on_a_thread_still_being_opened_is_checked_against_its_opening(
    rt: Runtime, run_id: str
) -> None:
    opening = make_command("open_thread", {"thread_id": "t-9", "ticket": "TCK-OTHER",
                                          "title": "t", "body": "b"},
                           actor_type="operator", actor_name="olga")  # fmt: skip
    submit(rt, opening, identity=OLGA)  # accepted, not applied yet
    assert refused(rt, BUILDER, "add_post", thread_id="t-9", body="x").rule == "outside_own_runs"


def test_an_agent_signals_only_for_itself_and_never_answers_guidance(
    rt: Runtime, run_id: str
) -> None:
    asked = act(rt, BUILDER, "control_signal",
                **signal(run_id, "builder", "guidance_request", question="Which DB?"))  # fmt: skip
    assert asked["status"] == "applied", asked["reason"]
    other = refused(rt, BUILDER, "control_signal",
                    **signal(run_id, "planner", "completion", summary="done"))  # fmt: skip
    assert other.rule == "agents_act_for_themselves"
    for agent in ("builder", "planner"):
        answer = refused(rt, PLANNER, "control_signal",
                         **signal(run_id, agent, "guidance_answer", answer="x"))  # fmt: skip
        assert answer.rule in ("agents_do_not_answer", "agents_act_for_themselves")
    own = refused(rt, BUILDER, "control_signal",
                  **signal(run_id, "builder", "guidance_answer", answer="Postgres"))  # fmt: skip
    assert own.rule == "agents_do_not_answer"


def test_a_run_bound_token_acts_only_on_its_run(rt: Runtime, run_id: str) -> None:
    other_run = runs.create_run(rt, tickets=["TCK-1"], agents=["builder"], mode="run",
                                brief=None, actor=SETUP)  # fmt: skip
    bound = Identity("agent", "builder", run_id=run_id, token_id="tok-b")
    ok = act(rt, bound, "control_signal", **signal(run_id, "builder", "completion", summary="s"))
    assert ok["status"] == "applied", ok["reason"]
    assert refused(rt, bound, "control_signal",
                   **signal(other_run, "builder", "completion", summary="s")
                   ).rule == "token_bound_to_run"  # fmt: skip
    assert refused(rt, bound, "open_thread", thread_id="t-1", ticket="TCK-1", run_id=other_run,
                   title="t", body="b").rule == "token_bound_to_run"  # fmt: skip
    bound_operator = Identity("operator", "olga", run_id=run_id)
    with pytest.raises(Forbidden) as caught:
        lifecycle.stop_run(rt, other_run, bound_operator)
    assert caught.value.rule == "token_bound_to_run"


# --- nobody answers their own guidance request (the handler knows who asked) -------------------


@pytest.mark.parametrize("how", ["control_signal", "answer_thread"])
def test_nobody_answers_their_own_guidance_request(rt: Runtime, run_id: str, how: str) -> None:
    asked = act(rt, OLGA, "control_signal",
                **signal(run_id, "builder", "guidance_request", question="Which DB?"))  # fmt: skip
    assert asked["status"] == "applied", asked["reason"]
    thread_id = _control_thread(rt, run_id, "builder")
    if how == "control_signal":
        answer: dict[str, Any] = signal(run_id, "builder", "guidance_answer", answer="SQLite")
    else:
        answer = {"thread_id": thread_id, "body": "SQLite"}
    before_events = counts(rt)[1]
    own = act(rt, OLGA, how, **answer)
    assert own["status"] == "rejected"
    assert Forbidden.rule_of(own["reason"]) == "no_answer_to_own_request"
    assert counts(rt)[1] == before_events, "a rejected answer writes no event"
    other = act(rt, OSCAR, how, **answer)
    assert other["status"] == "applied", other["reason"]


def _control_thread(rt: Runtime, run_id: str, agent: str) -> str:
    with rt.engine.connect() as conn:
        return str(conn.execute(
            text("SELECT thread_id FROM forum_control_threads"
                 " WHERE run_id = :r AND agent_name = :a"),
            {"r": run_id, "a": agent},
        ).scalar_one())  # fmt: skip


# --- runs and dead letters -------------------------------------------------------------------


def test_an_agent_may_not_create_close_stop_resume_or_iterate_runs(
    rt: Runtime, run_id: str
) -> None:
    attempts = [
        lambda: runs.create_run(rt, tickets=["T"], agents=["a"], mode="run", brief=None,
                                actor=BUILDER),
        lambda: gates.close_run(rt, run_id, dry_run=False, actor=BUILDER),
        lambda: lifecycle.stop_run(rt, run_id, BUILDER),
        lambda: lifecycle.resume_run(rt, run_id, BUILDER),
        lambda: lifecycle.iterate_run(rt, run_id, "again", BUILDER),
    ]  # fmt: skip
    before = counts(rt), runs.run_rows(rt.engine)
    for attempt in attempts:
        with pytest.raises(Forbidden) as caught:
            attempt()
        assert caught.value.rule == "runs_are_steered_by_operators_and_humans"
    assert (counts(rt), runs.run_rows(rt.engine)) == before


def test_an_operator_steers_a_run_as_itself(rt: Runtime, run_id: str) -> None:
    assert lifecycle.stop_run(rt, run_id, HANA) == "stopped"
    with rt.engine.connect() as conn:
        rows = conn.execute(
            text("SELECT actor_type, actor_name, payload FROM forum_events WHERE run_id = :r"
                 " AND event_type = 'run.status.changed'"), {"r": run_id}
        ).all()  # fmt: skip
    dialect = rt.engine.dialect.name
    stopped = {
        (row[0], row[1])
        for row in rows
        if json_value(row[2], dialect).get("to_status") in ("stopping", "stopped")
    }
    assert stopped == {("human", "hana")}


def test_a_local_agent_identity_keeps_the_role_rules_but_not_the_limits_of_place(
    rt: Runtime, run_id: str
) -> None:
    """Without a token the identity is only declared: the role rules hold (no answering, no
    triage), the place (own agent, own runs) does not: it could declare any name."""
    assert refused(rt, LOCAL_AGENT, "control_signal",
                   **signal(run_id, "builder", "guidance_answer", answer="x")
                   ).rule == "agents_do_not_answer"  # fmt: skip
    open_thread(rt, LOCAL_AGENT, "t-1", ticket="TCK-ELSEWHERE")
    assert refused(rt, LOCAL_AGENT, "close_thread", thread_id="t-1").rule == "agents_do_not_close"
    row = act(rt, LOCAL_AGENT, "control_signal",
              **signal(run_id, "planner", "completion", summary="s"))  # fmt: skip
    assert row["status"] == "applied", row["reason"]


def test_an_agent_reports_only_its_own_status(rt: Runtime, run_id: str) -> None:
    with pytest.raises(Forbidden) as caught:
        lifecycle.set_agent_status(rt, run_id, "planner", "failed", BUILDER)
    assert caught.value.rule == "agents_act_for_themselves"
    assert lifecycle.set_agent_status(rt, run_id, "builder", "failed", BUILDER) == "failed"


@pytest.mark.parametrize("who", [BUILDER, HANA], ids=["agent", "human"])
def test_only_operators_redrive_or_purge_dead_letters(rt: Runtime, who: Identity) -> None:
    with pytest.raises(Forbidden) as caught:
        deadletters.redrive(rt, "msg-1", identity=who)
    assert caught.value.rule == "dead_letters_are_for_operators"
    with pytest.raises(Forbidden):
        deadletters.purge(rt.engine, "msg-1", identity=who)
