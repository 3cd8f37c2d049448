"""The status text, rendered from a hand-built snapshot alone; colour only on a terminal."""

from __future__ import annotations

import io
import sys
from copy import deepcopy
from datetime import UTC, datetime, timedelta

import pytest

from metawsm.cli.render import render_run, table, use_colour
from metawsm.domain.snapshot import (
    Blocker,
    BriefSummary,
    EscalationItem,
    PendingGuidance,
    RunSnapshot,
    ThreadItem,
)
from tests.fixtures.snapshots import NOW, RID, agent

ANSI = "\x1b["


class _Terminal(io.StringIO):
    """A stdout that says it is a terminal."""

    def isatty(self) -> bool:
        return True


def _thread(thread_id: str, state: str, age_s: int, title: str) -> ThreadItem:
    return ThreadItem(
        thread_id=thread_id,
        title=title,
        state=state,
        priority="high",
        assignee_name=None,
        updated_at=NOW - timedelta(seconds=age_s),
        age_s=age_s,
        is_unanswered=state == "new",
    )


def _escalation(tier: str, raised: bool, age_s: int) -> EscalationItem:
    return EscalationItem(
        thread_id="t-db",
        tier=tier,
        reason=f"high thread 'DB choice' waiting (tier {tier})",
        subject="",
        since=NOW - timedelta(seconds=age_s),
        age_s=age_s,
        raised=raised,
    )


def full() -> RunSnapshot:
    """A run with something in every section."""
    return RunSnapshot(
        run_id=RID,
        status="awaiting_guidance",
        mode="bootstrap",
        tickets=["TCK-1", "TCK-2"],
        control_epoch=2,
        updated_at=NOW,
        brief=BriefSummary(goal="ship the importer", done_criteria="tests pass"),
        agents=[
            agent(
                "alice",
                pending_guidance=True,
                last_signal_at=datetime(2026, 3, 1, 11, 55, 0, 123456, tzinfo=UTC),
                control_thread_id="fctrl-alice",
            ),
            agent("bob", status="stalled", completed=True, validation_status="passed"),
        ],
        pending_guidance=[
            PendingGuidance(
                thread_id="fctrl-alice",
                agent_name="alice",
                question="Which DB should the importer use?",
                context="postgres or sqlite",
                asked_at=NOW - timedelta(seconds=45),
                age_s=45,
                request_event_id="fevt-9",
            )
        ],
        open_threads=[
            _thread("t-db", "new", 300, "DB choice"),
            _thread("t-ci", "waiting_human", 7500, "CI is red"),
        ],
        escalation_candidates=[_escalation("human", False, 7500)],
        escalations=[_escalation("operator", True, 600)],
        queue_counts={"new": 1, "waiting_human": 1, "closed": 3},
        unanswered_count=1,
        blockers=[
            Blocker(
                kind="gate",
                reason="agent alice has pending guidance: Which DB?",
                fix="metawsm forum signal --run-id R --agent-name alice --type guidance_answer",
            ),
            Blocker(kind="gate", reason="a bootstrap run needs a brief", fix=None),
            Blocker(
                kind="dead_letter",
                reason="dead letter on forum.commands.add_post: boom",
                fix="metawsm dlq redrive cmd-7",
                message_id="cmd-7",
            ),
        ],
        last_event_sequence=42,
        last_event_at=NOW,
        generated_at=NOW,
    )


def bare() -> RunSnapshot:
    """A fresh run: nothing pending, no threads, no blockers, no brief."""
    return full()._replace(
        **{
            "status": "running",
            "mode": "run",
            "tickets": ["TCK-1"],
            "control_epoch": 1,
            "brief": None,
            "agents": [agent("alice")],
            "pending_guidance": [],
            "open_threads": [],
            "escalation_candidates": [],
            "escalations": [],
            "queue_counts": {},
            "unanswered_count": 0,
            "blockers": [],
            "last_event_sequence": 3,
        }
    )


@pytest.fixture(autouse=True)
def _plain_stdout(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests start without NO_COLOR and on a stdout that is not a terminal."""
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setattr(sys, "stdout", io.StringIO())


def _text(run: RunSnapshot) -> str:
    return "\n".join(render_run(run))


def _section(lines: list[str], header: str) -> list[str]:
    """The lines after ``header`` up to the next blank line."""
    start = lines.index(header) + 1
    end = lines.index("", start) if "" in lines[start:] else len(lines)
    return lines[start:end]


def test_the_header_line_names_run_status_mode_tickets_and_epoch() -> None:
    first = render_run(full())[0]
    assert first == (
        f"Run: {RID}  Status: awaiting_guidance  Mode: bootstrap  Tickets: TCK-1, TCK-2  Epoch: 2"
    )


def test_the_brief_line_shows_goal_and_done_criteria() -> None:
    assert "Brief: goal=ship the importer  done=tests pass" in render_run(full())


def test_the_agents_table_has_a_row_per_agent_with_its_control_state() -> None:
    rows = _section(render_run(full()), "Agents:")
    header = ["agent", "status", "pending", "completed", "validation", "last signal"]
    assert rows[0].split(maxsplit=5) == header
    assert rows[1].split() == ["alice", "running", "yes", "no", "-", "2026-03-01T11:55:00+00:00"]
    assert rows[2].split() == ["bob", "stalled", "no", "yes", "passed", "-"]
    assert len(rows) == 3


def test_pending_guidance_lists_agent_age_thread_and_question() -> None:
    rows = _section(render_run(full()), "Pending guidance:")
    assert rows[0].split() == ["agent", "age", "thread", "question"]
    assert rows[1].split(maxsplit=3) == [
        "alice",
        "45s",
        "fctrl-alice",
        "Which DB should the importer use?",
    ]


def test_the_forum_line_counts_threads_by_state_and_lists_the_open_ones() -> None:
    lines = render_run(full())
    forum = next(i for i, line in enumerate(lines) if line.startswith("Forum:"))
    assert lines[forum] == "Forum: closed=3 new=1 waiting_human=1  unanswered=1"
    assert lines[forum + 1].split() == ["thread", "state", "priority", "age", "title"]
    assert lines[forum + 2].split(maxsplit=4) == ["t-db", "new", "high", "5m", "DB choice"]
    assert lines[forum + 3].split(maxsplit=4) == [
        "t-ci",
        "waiting_human",
        "high",
        "2h05m",
        "CI is red",
    ]


def test_escalations_list_raised_ones_then_those_due() -> None:
    rows = _section(render_run(full()), "Escalations:")
    assert rows[0].split() == ["thread", "tier", "raised", "age", "reason"]
    assert rows[1].split()[:4] == ["t-db", "operator", "yes", "10m"]
    assert rows[2].split()[:4] == ["t-db", "human", "due", "2h05m"]
    assert "(tier human)" in rows[2]


def test_blockers_show_each_reason_and_its_fix() -> None:
    lines = render_run(full())
    start = lines.index("Blockers:")
    assert lines[start + 1 : start + 6] == [
        "  - agent alice has pending guidance: Which DB?",
        "      fix: metawsm forum signal --run-id R --agent-name alice --type guidance_answer",
        "  - a bootstrap run needs a brief",
        "  - dead letter on forum.commands.add_post: boom",
        "      fix: metawsm dlq redrive cmd-7",
    ]


def test_the_last_line_is_the_last_event_sequence() -> None:
    assert render_run(full())[-1] == "Last event: 42"


def test_a_bare_run_omits_the_empty_sections() -> None:
    text = _text(bare())
    for header in ("Brief:", "Pending guidance:", "Escalations:", "Blockers:"):
        assert header not in text
    assert "Forum: none  unanswered=0" in text
    assert "Agents:" in text
    assert text.endswith("Last event: 3")


def test_rendering_is_a_pure_function_of_the_snapshot() -> None:
    run = full()
    copy = deepcopy(run)
    assert render_run(run) == render_run(copy)


def test_no_ansi_codes_when_stdout_is_not_a_terminal() -> None:
    assert not use_colour()
    assert ANSI not in _text(full())


def test_no_ansi_codes_on_a_terminal_when_no_color_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdout", _Terminal())
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_colour()
    assert ANSI not in _text(full())


def test_colour_on_a_terminal_without_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdout", _Terminal())
    assert use_colour()
    text = _text(full())
    assert ANSI in text
    assert "\x1b[33mawaiting_guidance" in text  # yellow status


def test_table_aligns_columns_and_shows_none_as_a_dash() -> None:
    assert table(["a", "bb"], [["xxx", None], ["y", 1]]) == ["a    bb", "xxx  -", "y    1"]
