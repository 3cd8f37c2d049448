"""The threads pages in a real browser: triage through the page by an operator, an agent's
session refused triage, live posts, filters and search, and seen marks."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import text

from metawsm.api.reads import reading
from metawsm.messages.common import Actor
from metawsm.services import thread_reads
from tests.fixtures.browser import Board, apply, open_thread
from tests.fixtures.conditions import wait_until


def thread_events(board: Board, thread_id: str) -> list[tuple[str, str, str]]:
    """(event type, actor type, actor name) of the thread's events, in order."""
    with board.pipeline.engine.connect() as connection:
        rows = connection.execute(
            text("SELECT event_type, actor_type, actor_name FROM forum_events"
                 " WHERE thread_id = :t ORDER BY thread_seq"), {"t": thread_id},
        )  # fmt: skip
        return [(r[0], r[1], r[2].strip()) for r in rows]


def view(board: Board, thread_id: str) -> dict[str, Any]:
    """The thread's view row."""
    with reading(board.pipeline.engine) as db:
        return thread_reads.thread_detail(db, thread_id, limit=1)["thread"]


def seen_sequence(board: Board, thread_id: str, viewer: tuple[str, str]) -> int:
    """The viewer's seen mark on the thread (0: never seen)."""
    with board.pipeline.engine.connect() as connection:
        found = connection.execute(
            text("SELECT last_seen_event_sequence FROM forum_thread_reads WHERE thread_id = :t"
                 " AND viewer_type = :vt AND viewer_id = :vi"),
            {"t": thread_id, "vt": viewer[0], "vi": viewer[1]},
        ).scalar()  # fmt: skip
    return int(found or 0)


def row(page: Page, title: str) -> Any:
    """The list's row of the thread titled ``title``."""
    return page.get_by_test_id("thread-row").filter(has_text=title)


def test_an_operator_triages_assigns_and_closes_an_agents_thread_through_the_page(
    board: Board,
) -> None:
    thread_id = open_thread(board, "fthr-triage", "The migration fails on PostgreSQL")
    page = board.signed_in(board.token("operator", "olga"), next_path="/threads")
    item = row(page, "The migration fails")
    expect(item.get_by_test_id("row-state")).to_have_text("new")
    item.get_by_role("link", name="The migration fails on PostgreSQL").click()
    expect(page).to_have_url(re.compile(f"/threads/{thread_id}$"))

    page.get_by_label("Priority", exact=True).select_option("high")
    page.get_by_role("button", name="Set priority").click()
    expect(page.get_by_test_id("flash")).to_have_text("Priority set")
    expect(page.get_by_test_id("thread-priority")).to_have_text("high")

    page.get_by_label("State", exact=True).select_option("triaged")
    page.get_by_role("button", name="Change state").click()
    expect(page.get_by_test_id("flash")).to_have_text("State changed")
    expect(page.get_by_test_id("thread-state")).to_have_text("triaged")
    # The select now offers the moves the transition table allows from "triaged".
    options = page.get_by_label("State", exact=True).locator("option").all_text_contents()
    assert options == ["waiting operator", "waiting human", "answered"]

    page.get_by_label("Assignee type").select_option("human")
    page.get_by_label("Assignee name").fill("hana")
    page.get_by_role("button", name="Assign").click()
    expect(page.get_by_test_id("flash")).to_have_text("Assigned")
    expect(page.get_by_test_id("thread-assignee")).to_have_text("human/hana")

    page.get_by_label("Reason for closing").fill("fixed by the new migration")
    page.get_by_role("button", name="Close thread").click()
    expect(page.get_by_test_id("flash")).to_have_text("Closed")
    expect(page.get_by_test_id("thread-state")).to_have_text("closed")
    expect(page.get_by_test_id("triage")).to_have_count(0)
    expect(page.get_by_test_id("timeline")).to_contain_text("fixed by the new migration")

    assert thread_events(board, thread_id) == [
        ("forum.thread.opened", "agent", "alice"),
        ("forum.priority.changed", "operator", "olga"),
        ("forum.state.changed", "operator", "olga"),
        ("forum.assigned", "operator", "olga"),
        ("forum.thread.closed", "operator", "olga"),
    ]
    final = view(board, thread_id)
    assert (final["state"], final["priority"], final["assignee_name"]) == ("closed", "high", "hana")


def test_an_agents_session_has_no_triage_controls_and_a_forged_triage_post_is_refused(
    board: Board,
) -> None:
    # alice works on TCK-1 in a run: she may post on its threads, not triage them.
    board.pipeline.create_run(Actor(type="operator", name="op"), agents=["alice"])
    thread_id = open_thread(board, "fthr-agent", "Which queue do I use?")
    page = board.signed_in(board.token("agent", "alice"), next_path=f"/threads/{thread_id}")
    expect(page.get_by_test_id("thread-head")).to_contain_text("Which queue do I use?")
    expect(page.get_by_label("Post", exact=True)).to_be_visible()
    expect(page.get_by_test_id("triage")).to_have_count(0)
    for name in ("Answer", "Change state", "Set priority", "Assign", "Close thread"):
        expect(page.get_by_role("button", name=name, exact=True)).to_have_count(0)
    before = thread_events(board, thread_id)

    csrf = page.locator("input[name=csrf]").first.get_attribute("value")
    assert csrf
    for action, form, rule in (
        ("priority", {"priority": "urgent"}, "agents_do_not_triage"),
        ("close", {"reason": "done"}, "agents_do_not_close"),
        ("answer", {"body": "my own answer"}, "agents_do_not_answer"),
    ):
        response = page.request.post(
            f"/threads/{thread_id}/{action}",
            form={"csrf": csrf, "next": f"/threads/{thread_id}", **form},
            max_redirects=0,
        )
        assert response.status == 303, response.status
        page.goto(response.headers["location"])
        flash = page.get_by_test_id("flash")
        expect(flash).to_contain_text("Refused")
        expect(flash).to_contain_text(f"rule: {rule}")
    assert thread_events(board, thread_id) == before
    assert view(board, thread_id)["priority"] == "normal"

    # What an agent may do, it does through the page.
    page.get_by_label("Post", exact=True).fill("Found it: the default queue.")
    page.get_by_role("button", name="Post").click()
    expect(page.get_by_test_id("flash")).to_have_text("Posted")
    assert thread_events(board, thread_id)[-1] == ("forum.post.added", "agent", "alice")


def test_a_post_by_another_identity_appears_live_on_the_open_thread_and_in_the_list(
    board: Board,
) -> None:
    thread_id = open_thread(board, "fthr-live", "Flaky test in CI")
    token = board.token("human", "hana")
    page = board.signed_in(token, next_path=f"/threads/{thread_id}")
    listing = board.signed_in(token, next_path="/threads")
    for p in (page, listing):
        expect(p.locator("#live-status")).to_have_attribute("data-state", "live")
    expect(page.get_by_test_id("entry")).to_have_count(1)
    page.get_by_label("Answer or post").fill("half-typed reply")

    apply(board, "add_post", {"thread_id": thread_id, "body": "It fails one run in ten."},
          ("agent", "alice"))  # fmt: skip
    expect(page.get_by_test_id("entry")).to_have_count(2)
    expect(page.get_by_test_id("entry").last).to_contain_text("It fails one run in ten.")
    apply(board, "set_priority", {"thread_id": thread_id, "priority": "urgent"},
          ("operator", "olga"))  # fmt: skip
    expect(page.get_by_test_id("thread-priority")).to_have_text("urgent")
    expect(row(listing, "Flaky test").get_by_test_id("row-priority")).to_have_text("urgent")
    # No reload: the stream brought both, and what the person was typing is still there.
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
    assert listing.evaluate("performance.getEntriesByType('navigation').length") == 1
    expect(page.get_by_label("Answer or post")).to_have_value("half-typed reply")
    board.shot(page, "thread-light")
    dark = board.signed_in(token, dark=True, next_path=f"/threads/{thread_id}")
    expect(dark.get_by_test_id("entry")).to_have_count(3)
    board.shot(dark, "thread-dark")


def test_filters_and_search_find_the_right_threads(board: Board) -> None:
    open_thread(board, "fthr-a", "Cache misses on startup", ticket="OPS-1", priority="high")
    open_thread(board, "fthr-b", "Disk almost full", ticket="OPS-2", priority="low",
                body="The volume of the database is at 93 percent.")  # fmt: skip
    open_thread(board, "fthr-c", "Review the release notes", ticket="DOC-7")
    apply(board, "assign_thread",
          {"thread_id": "fthr-c", "assignee_type": "human", "assignee_name": "hana"},
          ("operator", "olga"))  # fmt: skip
    page = board.signed_in(board.token("human", "hana"), next_path="/threads")
    expect(page.get_by_test_id("thread-row")).to_have_count(3)
    # Urgent first: the high-priority thread leads the list.
    expect(page.get_by_test_id("thread-row").first).to_contain_text("Cache misses")

    def shown() -> list[str]:
        return page.get_by_test_id("thread-row").locator("a.title").all_text_contents()

    page.get_by_label("Ticket").fill("OPS-2")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_test_id("thread-row")).to_have_count(1)
    assert shown() == ["Disk almost full"]
    assert "ticket=OPS-2" in page.url

    page.goto("/threads")
    page.get_by_label("Priority").select_option("high")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_test_id("thread-row")).to_have_count(1)
    assert shown() == ["Cache misses on startup"]

    page.goto("/threads")
    page.get_by_label("Assignee").fill("hana")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_test_id("thread-row")).to_have_count(1)
    assert shown() == ["Review the release notes"]

    page.goto("/threads")
    page.get_by_label("Search").fill("at 93 percent")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_test_id("thread-row")).to_have_count(1)
    assert shown() == ["Disk almost full"]

    page.goto("/threads?state=nonsense")
    expect(page.get_by_test_id("list-error")).to_contain_text("state 'nonsense': must be one of")
    expect(page.get_by_test_id("thread-row")).to_have_count(0)


def test_the_list_pages_by_urgency_then_activity(
    board: Board, monkeypatch: pytest.MonkeyPatch
) -> None:
    from metawsm.board import threads

    for n, priority in enumerate(("low", "urgent", "normal", "urgent")):
        open_thread(board, f"fthr-p{n}", f"Paged thread {n}", priority=priority)
    monkeypatch.setattr(threads, "LIST_PAGE", 2)  # the server runs in this process
    page = board.signed_in(board.token("human", "hana"), next_path="/threads")
    titles = page.get_by_test_id("thread-row").locator("a.title")
    expect(titles).to_have_text(["Paged thread 3", "Paged thread 1"])
    page.get_by_test_id("next-page").click()
    expect(titles).to_have_text(["Paged thread 2", "Paged thread 0"])
    expect(page.get_by_test_id("next-page")).to_have_count(0)


def test_reading_a_thread_moves_the_seen_mark_and_the_unseen_marks_follow(board: Board) -> None:
    thread_id = open_thread(board, "fthr-seen", "Is the nightly build green?")
    page = board.signed_in(board.token("human", "hana"), next_path="/threads")
    expect(row(page, "nightly build").get_by_test_id("unseen-mark")).to_be_visible()
    assert seen_sequence(board, thread_id, ("human", "hana")) == 0

    row(page, "nightly build").get_by_role("link").click()
    expect(page.get_by_test_id("thread-head")).to_have_attribute("data-seen", re.compile(r"\d+"))
    last = view(board, thread_id)["last_event_sequence"]
    assert seen_sequence(board, thread_id, ("human", "hana")) == last
    page.goto("/threads")
    expect(row(page, "nightly build")).to_be_visible()
    expect(row(page, "nightly build").get_by_test_id("unseen-mark")).to_have_count(0)
    page.goto("/")
    expect(page.get_by_test_id("unseen").get_by_test_id("thread-item")).to_have_count(0)

    # Activity by someone else: unseen again; reading it live moves the mark along.
    page.goto(f"/threads/{thread_id}")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    apply(board, "add_post", {"thread_id": thread_id, "body": "Yes, since 02:00."},
          ("agent", "alice"))  # fmt: skip
    expect(page.get_by_test_id("entry")).to_have_count(2)
    newest = view(board, thread_id)["last_event_sequence"]
    assert newest > last
    expect(page.get_by_test_id("thread-head")).to_have_attribute("data-seen", str(newest))
    wait_until(lambda: seen_sequence(board, thread_id, ("human", "hana")) == newest, 10,
               "the seen mark to follow the live update")  # fmt: skip
    # Another person has not read it: the mark is theirs alone.
    other = board.signed_in(board.token("human", "hugo"), next_path="/threads")
    expect(row(other, "nightly build").get_by_test_id("unseen-mark")).to_be_visible()
