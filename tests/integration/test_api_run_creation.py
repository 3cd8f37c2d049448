"""``POST /api/v1/runs`` with ``Idempotency-Key``: a client that retries a run's creation after a
lost answer gets one run, not two. Real uvicorn over the pipeline's database (SQLite, and
PostgreSQL when configured), real tokens."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

import metawsm
from tests.fixtures.api import Api, api_for, issue_token
from tests.fixtures.database import NO_BROKER_URL
from tests.fixtures.pipeline import Pipeline

SOURCE_ROOT = str(Path(metawsm.__file__).resolve().parents[1])
RUNS = "/api/v1/runs"
BODY: dict[str, Any] = {"tickets": ["TCK-7"], "agents": ["alice", "bob"]}


@pytest.fixture
def api(idle_pipeline: Pipeline) -> Iterator[Api]:
    """The API over an idle pipeline: creating a run needs no worker."""
    with api_for(idle_pipeline.container) as served:
        yield served


def _run_ids(api: Api) -> list[str]:
    return sorted(run["run_id"] for run in api.operator.get(RUNS).json()["runs"])


def test_the_same_key_and_request_again_answer_the_run_it_created(api: Api) -> None:
    headers = {"Idempotency-Key": "create-7"}
    first = api.operator.post(RUNS, json=BODY, headers=headers)
    assert first.status_code == 201, first.text
    assert "idempotent-replayed" not in first.headers
    again = api.operator.post(RUNS, json=BODY, headers=headers)
    assert again.status_code == 201, again.text
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert _run_ids(api) == [first.json()["run_id"]]


def test_without_a_key_each_request_creates_a_run(api: Api) -> None:
    first = api.operator.post(RUNS, json=BODY)
    second = api.operator.post(RUNS, json=BODY)
    assert (first.status_code, second.status_code) == (201, 201)
    assert _run_ids(api) == sorted([first.json()["run_id"], second.json()["run_id"]])


def test_a_key_reused_for_another_request_or_caller_is_409_and_creates_nothing(
    api: Api, idle_pipeline: Pipeline
) -> None:
    headers = {"Idempotency-Key": "create-8"}
    created = api.operator.post(RUNS, json=BODY, headers=headers)
    assert created.status_code == 201, created.text
    other_body = {**BODY, "agents": ["alice"]}
    brief = {"goal": "g", "scope": "s", "done_criteria": "d", "constraints": "c"}
    bootstrap = {"tickets": ["TCK-7"], "agents": ["alice", "bob"], "mode": "bootstrap"}
    other_operator = issue_token(idle_pipeline.container.engine, "operator", "operator-2")
    with api.as_token(other_operator) as someone_else:
        refusals = [
            api.operator.post(RUNS, json=other_body, headers=headers),
            api.operator.post(RUNS, json={**bootstrap, "brief": brief}, headers=headers),
            someone_else.post(RUNS, json=BODY, headers=headers),
        ]
    for refused in refusals:
        assert refused.status_code == 409, refused.text
        error = refused.json()
        assert (error["code"], error["field"]) == ("idempotency_key_reused", "Idempotency-Key")
        assert created.json()["run_id"] in error["message"]
    assert _run_ids(api) == [created.json()["run_id"]]


def test_requests_racing_with_one_key_create_one_run(api: Api) -> None:
    headers = {"Idempotency-Key": "create-9"}
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda _: api.operator.post(RUNS, json=BODY, headers=headers),
                                range(8)))  # fmt: skip
    assert [a.status_code for a in answers] == [201] * 8, [a.text for a in answers]
    assert {a.json()["run_id"] for a in answers} == set(_run_ids(api))
    assert len(_run_ids(api)) == 1
    assert sum("idempotent-replayed" not in a.headers for a in answers) == 1


@pytest.mark.parametrize("key", ["", "k" * 129])
def test_an_empty_or_too_long_key_is_422_naming_the_header(api: Api, key: str) -> None:
    refused = api.operator.post(RUNS, json=BODY, headers={"Idempotency-Key": key})
    assert refused.status_code == 422, refused.text
    assert refused.json()["field"] == "header.Idempotency-Key"
    assert _run_ids(api) == []


def test_run_create_with_an_idempotency_key_on_the_command_line_and_through_the_api(
    api: Api, idle_pipeline: Pipeline, tmp_path: Path
) -> None:
    operator = issue_token(idle_pipeline.container.engine, "operator", "olga")
    local = {"METAWSM_DATABASE_URL": idle_pipeline.settings.database_url}
    remote = {"METAWSM_API_URL": api.url, "METAWSM_TOKEN": operator}
    args = ["run", "create", "--ticket", "T-1", "--agent", "alice", "--json"]
    as_olga = ["--actor-type", "operator", "--actor-name", "olga"]
    for env, extra, key in ((local, as_olga, "cli-1"), (remote, [], "cli-2")):
        first = _metawsm(tmp_path, env, *args, *extra, "--idempotency-key", key)
        again = _metawsm(tmp_path, env, *args, *extra, "--idempotency-key", key)
        assert first.returncode == again.returncode == 0, (first.stderr, again.stderr)
        assert json.loads(again.stdout)["run_id"] == json.loads(first.stdout)["run_id"]
        other = _metawsm(tmp_path, env, *args, "--agent", "bob", *extra, "--idempotency-key", key)
        assert other.returncode == 2, other.stderr
        assert f"idempotency key {key!r} already created run" in other.stderr
    bad = _metawsm(tmp_path, local, *args, *as_olga, "--idempotency-key", "k" * 129)
    assert bad.returncode == 2 and "--idempotency-key" in bad.stderr, bad.stderr
    assert len(_run_ids(api)) == 2


def _metawsm(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("METAWSM_")}
    clean["PYTHONPATH"] = os.pathsep.join(
        [SOURCE_ROOT, *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    return subprocess.run(
        [sys.executable, "-m", "metawsm", *args],
        env={**clean, "METAWSM_BROKER_URL": NO_BROKER_URL, **env},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
