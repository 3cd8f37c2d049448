"""``metawsm token ...`` and the command line acting as the holder of ``METAWSM_TOKEN``.

Real SQLite (PostgreSQL where configured), a real Redis; writes use ``--no-wait`` (no worker:
what is checked is what was accepted, as whom, or that nothing was).
"""

from __future__ import annotations

import json
from typing import Any

from click.testing import Result
from sqlalchemy import text

from metawsm.services.tokens import hash_token
from tests.fixtures.pipeline import Pipeline
from tests.integration.test_forum_cli import metawsm


def run(p: Pipeline, *args: str, token: str | None = None, **env: str | None) -> Result:
    return metawsm(p, *args, TOKEN=token, **env)


def create(p: Pipeline, *args: str, token: str | None = None) -> dict[str, Any]:
    result = run(p, "token", "create", *args, "--json", token=token)
    assert result.exit_code == 0, (result.stdout, result.stderr)
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def ledger(p: Pipeline) -> list[tuple[Any, ...]]:
    with p.engine.connect() as conn:
        rows = conn.execute(text("SELECT command_type, payload, token_id FROM forum_commands"))
        return [tuple(r) for r in rows]


def ask(p: Pipeline, token: str | None, *extra: str) -> Result:
    return run(p, "forum", "ask", "--ticket", "TCK-1", "--title", "t", "--body", "b",
               "--no-wait", "--json", *extra, token=token)  # fmt: skip


def test_create_prints_the_token_once_and_list_never_shows_it(idle_pipeline: Pipeline) -> None:
    p = idle_pipeline
    plain = run(p, "token", "create", "--actor-type", "agent", "--actor-name", "builder")
    assert plain.exit_code == 0, plain.stderr
    token = plain.stdout.strip()
    assert token.startswith("mwsm_") and "shown only now" in plain.stderr
    listed = run(p, "token", "list", "--json")
    assert listed.exit_code == 0, listed.stderr
    (entry,) = json.loads(listed.stdout)["tokens"]
    assert (entry["actor_type"], entry["actor_name"], entry["status"]) == (
        "agent",
        "builder",
        "active",
    )
    for shown in (listed.stdout, run(p, "token", "list").stdout, run(p, "config", "show").stdout):
        assert token not in shown and hash_token(token) not in shown


def test_a_write_acts_as_the_tokens_identity_and_records_the_token(idle_pipeline: Pipeline) -> None:
    p = idle_pipeline
    operator = create(p, "--actor-type", "operator", "--actor-name", "olga")
    outcome = json.loads(ask(p, operator["token"], "--actor-type", "operator").stdout)
    assert outcome["status"] == "accepted"
    ((_kind, payload, token_id),) = ledger(p)
    payload = json.loads(payload) if isinstance(payload, str) else payload
    assert (payload["actor_type"], payload["actor_name"]) == ("operator", "olga")
    assert token_id == operator["token_id"]


def test_actor_flags_naming_someone_else_are_refused_with_a_token(idle_pipeline: Pipeline) -> None:
    p = idle_pipeline
    agent = create(p, "--actor-type", "operator", "--actor-name", "olga")
    result = ask(p, agent["token"], "--actor-name", "mallory")
    assert result.exit_code == 2
    assert "--actor-name mallory" in result.stderr and "operator/olga" in result.stderr
    assert ledger(p) == []


def test_a_refused_token_is_counted_never_shown_and_changes_nothing(
    idle_pipeline: Pipeline,
) -> None:
    p = idle_pipeline
    issued = create(p, "--actor-type", "operator", "--actor-name", "olga")
    assert run(p, "token", "revoke", issued["token_id"]).exit_code == 0
    for bad in (issued["token"], "mwsm_" + "z" * 43):
        result = ask(p, bad)
        assert result.exit_code == 1, result.stderr
        assert bad not in result.stderr + result.stdout
        assert json.loads(result.stdout)["error"]["code"] == "unauthenticated"
    assert ledger(p) == []
    with p.engine.connect() as conn:
        failures = conn.execute(
            text("SELECT labels, SUM(value) FROM ops_counters"
                 " WHERE name = 'metawsm_auth_failures_total' GROUP BY labels")
        ).all()  # fmt: skip
    assert sorted((labels, int(n)) for labels, n in failures) == [
        ('reason="revoked"', 1),
        ('reason="unknown"', 1),
    ]


def test_an_agent_token_may_not_answer_and_says_which_rule(idle_pipeline: Pipeline) -> None:
    p = idle_pipeline
    agent = create(p, "--actor-type", "agent", "--actor-name", "builder")
    result = run(p, "forum", "answer", "--thread-id", "t-1", "--body", "x", "--no-wait", "--json",
                 token=agent["token"])  # fmt: skip
    assert result.exit_code == 1
    error = json.loads(result.stdout)["error"]
    assert (error["code"], error["rule"]) == ("forbidden", "agents_do_not_answer")
    assert ledger(p) == []


def test_only_an_operator_token_manages_tokens(idle_pipeline: Pipeline) -> None:
    p = idle_pipeline
    human = create(p, "--actor-type", "human", "--actor-name", "hana")
    for args in (["create", "--actor-type", "operator", "--actor-name", "me"], ["list"],
                 ["revoke", human["token_id"]]):  # fmt: skip
        result = run(p, "token", *args, "--json", token=human["token"])
        assert result.exit_code == 1, (args, result.stderr)
        assert json.loads(result.stdout)["error"]["rule"] == "tokens_are_for_operators"
    operator = create(p, "--actor-type", "operator", "--actor-name", "olga")
    made = create(p, "--actor-type", "agent", "--actor-name", "b", token=operator["token"])
    assert made["created_by"] == "operator/olga"


def test_an_agent_token_may_not_redrive_dead_letters(idle_pipeline: Pipeline) -> None:
    p = idle_pipeline
    agent = create(p, "--actor-type", "agent", "--actor-name", "builder")
    result = run(p, "dlq", "redrive", "msg-1", "--json", token=agent["token"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["error"]["rule"] == "dead_letters_are_for_operators"


def test_a_bad_expiry_is_a_usage_error_naming_the_flag(idle_pipeline: Pipeline) -> None:
    result = run(idle_pipeline, "token", "create", "--actor-type", "agent", "--actor-name", "b",
                 "--expires", "soon")  # fmt: skip
    assert result.exit_code == 2 and "--expires" in result.stderr
