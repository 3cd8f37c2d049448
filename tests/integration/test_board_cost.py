"""What a board page costs: its ``Server-Timing`` header, and the same SQL statements whatever
the number of runs (the inbox and ``/runs`` read every active run through one snapshot).

Not timed: bench/board.py measures the milliseconds."""

from __future__ import annotations

import re
from typing import Any

import httpx
from sqlalchemy import Engine

from metawsm.messages.common import Actor
from tests.fixtures.api import issue_token, serving
from tests.fixtures.pipeline import Pipeline
from tests.fixtures.statements import counted_statements

OPERATOR = Actor(type="operator", name="olga")
TIMING = re.compile(r"^app;dur=\d+\.\d$")
# The API's event follower polls the log on its own (services/thread_reads.py events_after).
FOLLOWER_TAIL = "FROM forum_events WHERE sequence > :cursor ORDER BY sequence LIMIT :limit"


def signed_in(url: str, token: str) -> httpx.Client:
    browser = httpx.Client(base_url=url, follow_redirects=False, timeout=30)
    assert browser.post("/signin", data={"token": token, "next": "/"}).status_code == 303
    return browser


def statements(engine: Engine) -> Any:
    """Every read on ``engine`` from any thread while the block runs (a request's reads run in
    the server's worker threads), less the follower's polls and ``BEGIN``."""
    return counted_statements(
        engine, lambda sql: sql != "BEGIN" and not sql.endswith(FOLLOWER_TAIL)
    )


def _busy_runs(p: Pipeline, count: int, offset: int) -> str:
    """``count`` runs, each with a pending question (in the inbox), an agent done and one not
    (an unmet gate), and an open thread that waits on a person; the first run's id."""
    made = []
    for i in range(offset, offset + count):
        run_id = p.create_run(OPERATOR, ("alice", "bob"), (f"TCK-{i % 3}",))
        asked = {"control_type": "guidance_request", "question": f"q{i}"}
        done = {"control_type": "completion", "summary": "done"}
        for agent, signal in (("alice", asked), ("bob", done)):
            body = {"run_id": run_id, "agent_name": agent, **signal}
            p.submit(p.command("control_signal", "agent", run_id=run_id, agent_name=agent,
                               signal=body))  # fmt: skip
        opened = {"thread_id": f"t-{i}", "ticket": "TCK-1", "run_id": run_id, "body": "help"}
        p.submit(p.command("open_thread", "agent", agent_name="bob", title=f"t {i}", **opened))
        made.append(run_id)
    p.settle(60)
    return made[0]


def test_board_pages_say_their_server_time_and_other_responses_do_not(pipeline: Pipeline) -> None:
    token = issue_token(pipeline.engine, "human", "hana")
    with serving(pipeline.container) as (url, _):
        anonymous = httpx.Client(base_url=url, follow_redirects=False)
        signin = anonymous.get("/signin")
        assert signin.status_code == 200 and TIMING.match(signin.headers["server-timing"])
        browser = signed_in(url, token)
        for path, headers in (("/", {}), ("/runs", {}), ("/threads", {}),
                              ("/", {"X-Board-Fragment": "live"})):  # fmt: skip
            page = browser.get(path, headers=headers)
            assert page.status_code == 200, path
            assert TIMING.match(page.headers["server-timing"]), (path, page.headers)
        missing = browser.get("/threads/no-such-thread")
        assert missing.status_code == 404 and TIMING.match(missing.headers["server-timing"])

        for response in (
            anonymous.get("/"),  # the redirect to the sign-in page
            browser.get("/board/static/board.css"),
            anonymous.get("/api/v1/health"),
            httpx.get(f"{url}/api/v1/forum/threads", headers={"Authorization": f"Bearer {token}"}),
        ):
            assert response.status_code in (200, 303), response.url
            assert "server-timing" not in response.headers, response.url


def test_board_pages_read_the_same_statements_for_1_and_12_runs(idle_pipeline: Pipeline) -> None:
    p = idle_pipeline
    token = issue_token(p.engine, "operator", "olga")
    counts: dict[int, dict[str, int]] = {}
    made, first_run = 0, ""
    for n in (1, 12):
        with p.inprocess_worker():  # stopped before counting: only the server reads
            newest_first = _busy_runs(p, n - made, made)
        first_run = first_run or newest_first
        made = n
        with serving(p.container) as (url, _):
            browser = signed_in(url, token)
            counts[n] = {}
            for path in ("/", "/runs", f"/runs/{first_run}", "/threads"):
                browser.get(path)  # connections opened and warm: counted the same each time
                with statements(p.engine) as seen:
                    page = browser.get(path)
                assert page.status_code == 200, path
                counts[n][path] = len(seen)
            inbox = browser.get("/").text
        assert inbox.count('data-testid="guidance-item"') == n
    assert counts[1] == counts[12], counts
