"""The board made to be used: it fits a phone, honours the system's dark mode, names every
control for assistive technology, and a live update moves nothing the person is looking at.
The inbox's, the list's and the runs page's screenshots (light and dark) are taken here, on a
board with something in each section."""

from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import Page, expect

from metawsm.messages.common import Actor
from tests.fixtures.api import client
from tests.fixtures.browser import Board, apply, open_thread, send_signal

# WCAG 2.2's minimum target size (2.5.8), CSS pixels.
MIN_TARGET_PX = 24
CONTROLS = "input:not([type=hidden]), select, textarea, button"


def busy_board(board: Board) -> tuple[str, str]:
    """A run whose agent alice waits for guidance, and a thread by bob waiting on a person
    with a few posts; (run id, thread id)."""
    run_id = board.pipeline.create_run(
        Actor(type="operator", name="op"), agents=["alice", "bob"], tickets=["TCK-7"]
    )
    with client(board.url, board.token("agent", "alice", run_id)) as agent:
        send_signal(agent, run_id, "guidance_request", question="Which database should I use?",
                    context="The tests run on SQLite; production is PostgreSQL.")  # fmt: skip
    thread_id = open_thread(board, "fthr-usable", "The nightly build times out on the docs step",
                            ticket="TCK-7", priority="high", by=("agent", "bob"))  # fmt: skip
    apply(board, "add_post", {"thread_id": thread_id, "body": "It started after the upgrade."},
          ("agent", "bob"))  # fmt: skip
    open_thread(board, "fthr-usable-2", "Rename the staging queue?", ticket="TCK-8")
    return run_id, thread_id


def pages_of(run_id: str, thread_id: str) -> list[str]:
    """The board's pages with content."""
    return ["/", "/threads", f"/threads/{thread_id}", "/runs", f"/runs/{run_id}"]


def horizontal_overflow(page: Page) -> int:
    """How far the page is wider than its viewport (0: it fits)."""
    return int(page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    ))  # fmt: skip


def unusable_controls(page: Page) -> list[dict[str, Any]]:
    """The shown controls that stick out of the viewport or are smaller than a finger's
    minimum target."""
    found: list[dict[str, Any]] = page.evaluate(
        """([selector, min]) => Array.from(document.querySelectorAll(selector))
            .filter((el) => el.checkVisibility())
            .map((el) => { const r = el.getBoundingClientRect();
                           return {what: el.outerHTML.slice(0, 80), left: r.left, right: r.right,
                                   width: r.width, height: r.height}; })
            .filter((c) => c.left < 0 || c.right > document.documentElement.clientWidth
                           || c.width < min || c.height < min)""",
        [CONTROLS, MIN_TARGET_PX],
    )
    return found


def test_every_page_fits_a_phone_and_its_controls_can_be_used(board: Board) -> None:
    run_id, thread_id = busy_board(board)
    page = board.signed_in(board.token("human", "hana"), width=390, height=844)
    for path in pages_of(run_id, thread_id):
        page.goto(path)
        expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
        assert horizontal_overflow(page) <= 0, path
        assert unusable_controls(page) == [], path
    page.goto(f"/threads/{thread_id}")
    board.shot(page, "thread-phone")
    page.goto("/")
    board.shot(page, "inbox-phone")
    item = page.get_by_test_id("guidance-item")
    item.get_by_label("Answer to alice").fill("PostgreSQL, as in production.")
    item.get_by_role("button", name="Answer").click()
    expect(page.get_by_test_id("flash")).to_contain_text("Answered")
    expect(page.get_by_test_id("guidance-item")).to_have_count(0)


def luminance(css_color: str) -> float:
    """The relative luminance (0 black .. 1 white) of an ``rgb(...)``/``rgba(...)`` color."""
    channels = [int(c) / 255 for c in re.findall(r"\d+", css_color)[:3]]
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def colors(page: Page) -> tuple[float, float]:
    """The luminance of the page's background and of its text."""
    background, text = page.evaluate(
        "[getComputedStyle(document.body).backgroundColor, getComputedStyle(document.body).color]"
    )
    return luminance(background), luminance(text)


# WCAG's contrast ratio for text (1.4.3, AA), and how a page computes it for its controls:
# the text's color against the first opaque background behind it (disabled controls exempt).
MIN_CONTRAST = 4.5
CONTRASTS = """([selector, min]) => {
    const rgb = (c) => (c.match(/[\\d.]+/g) || []).map(Number);
    const opaque = (c) => { const v = rgb(c); return v.length === 3 || v[3] > 0; };
    const lum = (v) => { const [r, g, b] = v.slice(0, 3).map((x) => { x /= 255;
        return x <= 0.04045 ? x / 12.92 : ((x + 0.055) / 1.055) ** 2.4; });
        return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
    const behind = (el) => { for (let at = el; at; at = at.parentElement) {
        const c = getComputedStyle(at).backgroundColor; if (opaque(c)) return c; }
        return "rgb(255, 255, 255)"; };
    return Array.from(document.querySelectorAll(selector))
        .filter((el) => el.checkVisibility() && !el.disabled)
        .map((el) => { const a = lum(rgb(getComputedStyle(el).color)), b = lum(rgb(behind(el)));
                       return {what: el.outerHTML.slice(0, 80),
                               ratio: (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05)}; })
        .filter((c) => c.ratio < min);
}"""


def unreadable_controls(page: Page) -> list[dict[str, Any]]:
    """The shown, enabled controls whose text does not stand out from its background."""
    found: list[dict[str, Any]] = page.evaluate(CONTRASTS, [CONTROLS, MIN_CONTRAST])
    return found


def test_the_pages_follow_the_systems_dark_mode(board: Board) -> None:
    run_id, thread_id = busy_board(board)
    # An operator's pages show every control: answers, triage, run actions.
    token = board.token("operator", "olga")
    light = board.signed_in(token)
    dark = board.signed_in(token, dark=True)
    for path in pages_of(run_id, thread_id):
        for page in (light, dark):
            page.goto(path)
            expect(page.get_by_test_id("identity")).to_have_text("operator/olga")
        background, text = colors(light)
        assert background > 0.9 and text < 0.05, (path, background, text)
        background, text = colors(dark)
        assert background < 0.05 and text > 0.7, (path, background, text)
        for page in (light, dark):
            assert unreadable_controls(page) == [], (path, page.context)
    for path, name in (("/", "inbox"), ("/threads", "threads"), ("/runs", "runs")):
        for page, scheme in ((light, "light"), (dark, "dark")):
            page.goto(path)
            expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
            board.shot(page, f"{name}-{scheme}")


def test_every_control_has_an_accessible_name(board: Board) -> None:
    run_id, thread_id = busy_board(board)
    # An operator's pages show every control: answers, triage, run actions.
    page = board.signed_in(board.token("operator", "olga"))
    for path in pages_of(run_id, thread_id):
        page.goto(path)
        expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
        page.keyboard.press("?")  # the help dialog's controls too
        expect(page.get_by_role("dialog", name="Keyboard")).to_be_visible()
        controls = page.locator(CONTROLS)
        assert controls.count() >= 2, path  # at least sign-out and the dialog's close
        for n in range(controls.count()):
            expect(controls.nth(n)).to_have_accessible_name(re.compile(r"\S"))


SHIFTS = """() => {
    window.boardShifts = [];
    new PerformanceObserver((list) => {
        for (const shift of list.getEntries()) {
            if (!shift.hadRecentInput) window.boardShifts.push(shift.value);
        }
    }).observe({type: "layout-shift", buffered: true});
}"""


def _top(page: Page, selector: str) -> float:
    """Where the element is on the screen (its top, CSS pixels from the viewport's top)."""
    return float(page.evaluate(f"document.querySelector({selector!r}).getBoundingClientRect().top"))


def _long_thread(board: Board) -> str:
    thread_id = open_thread(board, "fthr-long", "Why is the worker restarting?")
    for n in range(8):
        apply(board, "add_post", {"thread_id": thread_id, "body": f"Trace {n}:\nline\nline"},
              ("agent", "alice"))  # fmt: skip
    return thread_id


def test_a_live_post_moves_nothing_the_person_is_looking_at(board: Board) -> None:
    thread_id = _long_thread(board)
    page = board.signed_in(board.token("human", "hana"), next_path=f"/threads/{thread_id}",
                           height=600)  # fmt: skip
    entries = page.get_by_test_id("entry")
    expect(entries).to_have_count(9)
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    page.evaluate(SHIFTS)

    # Reading in the middle of the thread: a post arrives at its end.
    page.evaluate("document.querySelectorAll('[data-testid=entry]')[4].scrollIntoView()")
    reading = f"#{entries.nth(4).get_attribute('id')}"
    before = _top(page, reading)
    apply(board, "add_post", {"thread_id": thread_id, "body": "Restarted again at 03:10."},
          ("agent", "bob"))  # fmt: skip
    expect(entries).to_have_count(10)
    assert abs(_top(page, reading) - before) < 1

    # Typing a reply at the bottom: a post arrives above the box.
    box = page.get_by_label("Answer or post")
    box.scroll_into_view_if_needed()
    box.press_sequentially("The memory limit is ")
    before = _top(page, "#reply-body")
    apply(board, "add_post", {"thread_id": thread_id, "body": "And at 03:40.\nTwice."},
          ("agent", "bob"))  # fmt: skip
    expect(entries).to_have_count(11)
    expect(box).to_be_focused()
    assert abs(_top(page, "#reply-body") - before) < 1
    box.press_sequentially("too low")
    expect(box).to_have_value("The memory limit is too low")
    assert page.evaluate("window.boardShifts.reduce((a, b) => a + b, 0)") == 0
