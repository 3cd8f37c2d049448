"""The inbox in a real browser: sign in, a guidance request arrives live, the person answers
it in the page and the agent's waiting ``metawsm forum signal --wait`` gets the answer."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from playwright.sync_api import expect

import metawsm
from metawsm.messages.common import Actor
from tests.fixtures.browser import Board
from tests.fixtures.conditions import wait_until

SOURCE_ROOT = str(Path(metawsm.__file__).resolve().parents[1])


def agent_waits(board: Board, run_id: str, home: Path, question: str) -> subprocess.Popen[str]:
    """The agent's ``metawsm forum signal --type guidance_request --wait`` over the API, a
    separate process holding only the API's URL and its token."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": SOURCE_ROOT,
        "HOME": str(home),
        "METAWSM_API_URL": board.url,
        "METAWSM_TOKEN": board.token("agent", "alice", run_id),
        "METAWSM_RUN_ID": run_id,
        "METAWSM_AGENT_NAME": "alice",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "metawsm", "forum", "signal", "--type", "guidance_request",
         "--question", question, "--wait", "--timeout", "2m", "--json"],
        env=env, cwd=home, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )  # fmt: skip


def test_signing_in_shows_the_identity_and_a_bad_token_is_refused(board: Board) -> None:
    page = board.page()
    page.goto("/")
    expect(page).to_have_url(f"{board.url}/signin?next=/")
    page.get_by_label("Token").fill("mwsm_not-a-real-token")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("signin-error")).to_contain_text("unknown token")

    page = board.signed_in(board.token("human", "hana"))
    expect(page.get_by_test_id("identity")).to_have_text("human/hana")
    cookie = next(c for c in page.context.cookies() if c["name"] == "metawsm_session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(f"{board.url}/signin")
    assert not [c for c in page.context.cookies() if c["name"] == "metawsm_session"]


def test_a_guidance_request_arrives_live_and_the_answer_reaches_the_waiting_agent(
    board: Board, tmp_path: Path
) -> None:
    run_id = board.pipeline.create_run(Actor(type="operator", name="op"), agents=["alice"])
    page = board.signed_in(board.token("human", "hana"))
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    expect(page.get_by_test_id("guidance-item")).to_have_count(0)

    waiting = agent_waits(board, run_id, tmp_path, "Which database should I use?")
    try:
        item = page.get_by_test_id("guidance-item").filter(has_text="Which database")
        expect(item).to_be_visible()  # no reload: the stream brought it
        assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
        item.get_by_label("Answer to alice").fill("SQLite, the embedded default.")
        item.get_by_role("button", name="Answer").click()
        expect(page.get_by_test_id("flash")).to_contain_text("Answered")
        out, err = waiting.communicate(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
    assert waiting.returncode == 0, (out, err)
    answer = json.loads(out)
    assert answer["answer"] == "SQLite, the embedded default."
    assert answer["answered_by"] == "human/hana"
    expect(page.get_by_test_id("guidance-item")).to_have_count(0)
    wait_until(lambda: _run_status(board, run_id) == "running", 15, "the run back to running")


def _run_status(board: Board, run_id: str) -> str | None:
    from metawsm.services import guidance

    return guidance.run_status(board.pipeline.engine, run_id)
