"""The board's live updates when the connection drops: the page says it is disconnected, and
on reconnection it catches up on what was committed meanwhile, without a reload."""

from __future__ import annotations

from playwright.sync_api import expect

from metawsm.messages.common import Actor
from tests.fixtures.api import client
from tests.fixtures.browser import Board, run_status, send_signal
from tests.fixtures.conditions import wait_until
from tests.fixtures.relay import relaying


def test_the_page_says_it_is_disconnected_and_catches_up_on_reconnection(board: Board) -> None:
    run_id = board.pipeline.create_run(Actor(type="operator", name="op"), agents=["alice"])
    with relaying(board.url) as network:
        page = board.signed_in(board.token("human", "hana"), url=network.url)
        status = page.locator("#live-status")
        expect(status).to_have_attribute("data-state", "live")
        expect(status).to_have_text("live")
        expect(page.get_by_test_id("guidance-item")).to_have_count(0)
        page.evaluate("window.boardTestMarker = 'same page'")

        network.cut()
        expect(status).to_have_attribute("data-state", "disconnected")
        expect(status).to_contain_text("disconnected")

        # While the page is cut off, the agent asks (the API itself is up, not behind the relay).
        with client(board.url, board.token("agent", "alice", run_id)) as agent:
            send_signal(agent, run_id, "guidance_request", question="Is the cache safe to drop?")
        wait_until(lambda: run_status(board, run_id) == "awaiting_guidance", 15,
                   "the run awaiting guidance")  # fmt: skip
        expect(status).to_have_attribute("data-state", "disconnected")
        expect(page.get_by_test_id("guidance-item")).to_have_count(0)

        network.restore()
        expect(status).to_have_attribute("data-state", "live")
        item = page.get_by_test_id("guidance-item").filter(has_text="Is the cache safe to drop?")
        expect(item).to_be_visible()
        # Caught up without a reload: the same document, its script state intact.
        assert page.evaluate("window.boardTestMarker") == "same page"
        assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
