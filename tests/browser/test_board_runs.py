"""The runs pages in a real browser: a run's unmet gates, met live as its agent signals over the
API, the operator closing it through the page (recorded as the operator's), and an agent's
session without the operator's buttons, its forged posts refused with the rule named."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import Page, expect

from metawsm.messages.common import Actor
from metawsm.storage.dbapi import on_connection
from metawsm.storage.engine import connect
from tests.fixtures.api import client
from tests.fixtures.browser import Board, send_signal

STEERING_RULE = "rule: runs_are_steered_by_operators_and_humans"


def _rows(board: Board, sql: str, **params: Any) -> list[dict[str, Any]]:
    with connect(board.pipeline.engine) as connection, connection.begin():
        return on_connection(connection).rows(sql, params)


def _gate(page: Page, name: str) -> Any:
    return page.get_by_test_id("gate").and_(page.locator(f"[data-gate='{name}']"))


def test_unmet_gates_are_met_live_and_the_operator_closes_the_run(board: Board) -> None:
    run_id = board.pipeline.create_run(Actor(type="operator", name="op"), agents=["alice"])
    operator = board.token("operator", "olga")
    page = board.signed_in(operator, next_path="/runs")
    line = page.get_by_test_id("run-item").filter(has_text=run_id)
    expect(line.get_by_test_id("run-gates")).to_have_text("gates 1/4 met")
    expect(line.get_by_test_id("run-status")).to_have_text("running")

    line.get_by_role("link", name=run_id).click()
    expect(page).to_have_url(f"{board.url}/runs/{run_id}")
    expect(page.locator("#live-status")).to_have_attribute("data-state", "live")
    for name in ("status", "completion", "validation"):
        expect(_gate(page, name)).to_have_attribute("data-met", "false")
    expect(_gate(page, "completion")).to_contain_text("alice has not signalled completion")
    close = page.get_by_role("button", name="Close run", exact=True)
    expect(close).to_be_disabled()
    board.shot(page, "run-light")
    dark = board.signed_in(operator, dark=True, next_path=f"/runs/{run_id}")
    expect(_gate(dark, "completion")).to_have_attribute("data-met", "false")
    board.shot(dark, "run-dark")

    with client(board.url, board.token("agent", "alice", run_id)) as agent:
        send_signal(agent, run_id, "completion", summary="done")
        send_signal(agent, run_id, "validation", status="passed", done_criteria="tests pass")
    # No reload: the event stream brought the run's new status and its gates.
    expect(page.get_by_test_id("gates-count")).to_have_text("4/4 met")
    expect(page.get_by_test_id("run-summary").get_by_test_id("run-status")).to_have_text(
        "completed"
    )
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
    expect(close).to_be_enabled()

    close.click()
    expect(page.get_by_test_id("flash")).to_have_text("Run closed")
    expect(page.get_by_test_id("run-summary").get_by_test_id("run-status")).to_have_text("closed")
    assert _rows(board, "SELECT status FROM runs WHERE run_id = :r", r=run_id) == [
        {"status": "closed"}
    ]
    changes = _rows(
        board,
        "SELECT actor_type, actor_name FROM forum_events WHERE run_id = :r"
        " AND event_type = 'run.status.changed' ORDER BY sequence DESC",
        r=run_id,
    )
    assert changes[0] == {"actor_type": "operator", "actor_name": "olga"}


def _forge(page: Page, action: str) -> None:
    """Post a form the page does not offer, with the session's own CSRF token (from the
    sign-out form): only the role rules can refuse it."""
    csrf = page.locator("input[name=csrf]").first.input_value()
    page.evaluate(
        """([action, csrf]) => {
            const form = document.createElement("form");
            form.method = "post";
            form.action = action;
            for (const [name, value] of [["csrf", csrf], ["next", location.pathname]]) {
                const field = document.createElement("input");
                field.type = "hidden"; field.name = name; field.value = value;
                form.appendChild(field);
            }
            document.body.appendChild(form);
            form.submit();
        }""",
        [action, csrf],
    )


def test_an_agent_sees_no_run_actions_and_its_forged_posts_are_refused(board: Board) -> None:
    run_id = board.pipeline.create_run(Actor(type="operator", name="op"), agents=["alice"])
    token = board.token("agent", "alice", run_id)
    page = board.signed_in(token, next_path=f"/runs/{run_id}")
    expect(page.get_by_test_id("identity")).to_have_text("agent/alice")
    expect(_gate(page, "completion")).to_have_attribute("data-met", "false")
    expect(page.get_by_test_id("run-actions")).to_have_count(0)
    for name in ("Close run", "Check close (dry run)", "Stop run", "Resume run", "Iterate"):
        expect(page.get_by_role("button", name=name)).to_have_count(0)

    for action in ("stop", "close"):
        _forge(page, f"/runs/{run_id}/{action}")
        expect(page.get_by_test_id("flash")).to_contain_text(STEERING_RULE)
        expect(page).to_have_url(f"{board.url}/runs/{run_id}")
    assert _rows(board, "SELECT status FROM runs WHERE run_id = :r", r=run_id) == [
        {"status": "running"}
    ]
    with client(board.url, token) as agent:
        refused = agent.post(f"/api/v1/runs/{run_id}/stop")
    assert refused.status_code == 403, refused.text
    assert refused.json()["rule"] == "runs_are_steered_by_operators_and_humans"
