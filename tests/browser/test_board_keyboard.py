"""The inbox by keyboard: ``j``/``k`` move the selection, ``a`` answers the selected request,
``?`` shows the keys; keys typed in a text box are text, even when a live update arrives."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from metawsm.messages.common import Actor
from tests.fixtures.api import client
from tests.fixtures.browser import Board, apply, open_thread, run_status, send_signal
from tests.fixtures.conditions import wait_until


def _asks(board: Board, agent_name: str, question: str) -> str:
    """A run whose agent ``agent_name`` asks ``question`` over the API; the run's id."""
    run_id = board.pipeline.create_run(Actor(type="operator", name="op"), agents=[agent_name])
    with client(board.url, board.token("agent", agent_name, run_id)) as agent:
        send_signal(agent, run_id, "guidance_request", agent_name=agent_name, question=question)
    wait_until(lambda: run_status(board, run_id) == "awaiting_guidance", 15,
               f"{run_id} awaiting guidance")  # fmt: skip
    return run_id


def _current(page: Page) -> list[str | None]:
    """Each guidance item's ``aria-current``, in the page's order."""
    items = page.get_by_test_id("guidance-item")
    return [items.nth(i).get_attribute("aria-current") for i in range(items.count())]


def test_j_and_k_move_the_selection_and_a_answers_the_selected_request(board: Board) -> None:
    first = _asks(board, "alice", "Which branch do I rebase on?")
    second = _asks(board, "bob", "May I drop the legacy table?")
    page = board.signed_in(board.token("human", "hana"))
    items = page.get_by_test_id("guidance-item")
    expect(items).to_have_count(2)
    expect(items.first).to_contain_text("Which branch")  # the oldest first
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    assert _current(page) == [None, None]

    page.keyboard.press("j")
    expect(items.first).to_have_attribute("aria-current", "true")
    page.keyboard.press("j")
    expect(items.nth(1)).to_have_attribute("aria-current", "true")
    assert _current(page) == [None, "true"]
    page.keyboard.press("k")
    expect(items.first).to_have_attribute("aria-current", "true")
    assert _current(page) == ["true", None]
    page.keyboard.press("j")
    expect(items.nth(1)).to_have_attribute("aria-current", "true")

    page.keyboard.press("a")
    box = items.nth(1).get_by_label("Answer to bob")
    expect(box).to_be_focused()
    # j, k and a in the answer are text, not moves; a live update meanwhile (a new thread in
    # the inbox) keeps the box, its focus and the selection.
    page.keyboard.type("Yes: keep a backup ")
    open_thread(board, "fthr-kbd", "Unrelated question", by=("agent", "carol"))
    expect(page.get_by_test_id("unseen").get_by_test_id("thread-item")).to_have_count(1)
    expect(box).to_be_focused()
    page.keyboard.type("and ask jack")
    expect(box).to_have_value("Yes: keep a backup and ask jack")
    assert _current(page) == [None, "true"]

    page.keyboard.press("Tab")
    expect(items.nth(1).get_by_role("button", name="Answer")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("flash")).to_contain_text("Answered")
    expect(items).to_have_count(1)
    expect(items.first).to_contain_text("Which branch")
    wait_until(lambda: run_status(board, second) == "running", 15, "bob's run answered")
    assert run_status(board, first) == "awaiting_guidance"


def test_question_mark_shows_the_keys_and_escape_closes_them(board: Board) -> None:
    page = board.signed_in(board.token("human", "hana"))
    help_dialog = page.get_by_role("dialog", name="Keyboard")
    expect(help_dialog).to_be_hidden()
    page.keyboard.press("?")
    expect(help_dialog).to_be_visible()
    for key, meaning in (("j", "next"), ("k", "previous"), ("a", "answer the selected request"),
                         ("Enter", "open the selected item"), ("?", "this help")):  # fmt: skip
        expect(help_dialog.locator("kbd", has_text=key).first).to_be_visible()
        expect(help_dialog).to_contain_text(meaning)
    page.keyboard.press("Escape")
    expect(help_dialog).to_be_hidden()
    # Typed in a text box, "?" is a character.
    page.goto("/threads")
    search = page.get_by_label("Search")
    search.press_sequentially("why?")
    expect(help_dialog).to_be_hidden()
    expect(search).to_have_value("why?")


def test_the_selection_stays_on_an_item_a_live_update_changes(board: Board) -> None:
    thread_id = open_thread(board, "fthr-sel", "Which port does the API use?")
    page = board.signed_in(board.token("human", "hana"))
    # Listed twice: waiting on a person (first), and not seen.
    expect(page.get_by_test_id("thread-item")).to_have_count(2)
    item = page.get_by_test_id("waiting").get_by_test_id("thread-item")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    version = item.get_attribute("data-version")
    page.keyboard.press("j")
    expect(item).to_have_attribute("aria-current", "true")

    apply(board, "add_post", {"thread_id": thread_id, "body": "Still waiting."},
          ("agent", "alice"))  # fmt: skip
    expect(item).not_to_have_attribute("data-version", version or "")
    expect(item).to_have_attribute("aria-current", "true")
    expect(item).to_have_class(re.compile(r"\bselected\b"))
