"""Issue 14's defects, each as a user meets it: ``python -m metawsm`` (or its entry point) against
a real migrated database, a real Redis and, where a command must be applied, a solo worker.

One test per defect: the database found from another directory (and never created by a read
or a write), ``run show`` with the brief, Ctrl-C on a follow and on a waiting write, empty
results, ``command show``, actor defaults by role, errors named by their option, durations,
and the wording of history reasons and gates.
"""

from __future__ import annotations

import getpass
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

import metawsm
from metawsm.messages.common import Actor
from metawsm.services import gates, lifecycle, runs
from metawsm.storage.models import ForumCommand
from metawsm.storage.uow import unit_of_work
from tests.fixtures.database import NO_BROKER_URL, migrate_to_head
from tests.fixtures.pipeline import Pipeline, wait_until

SOURCE_ROOT = str(Path(metawsm.__file__).resolve().parents[1])
OPERATOR = Actor(type="operator", name="olga")


def _env(**metawsm_vars: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METAWSM_")}
    path = [SOURCE_ROOT, *filter(None, [os.environ.get("PYTHONPATH")])]
    env["PYTHONPATH"] = os.pathsep.join(path)
    env.update({f"METAWSM_{k}": v for k, v in metawsm_vars.items()})
    return env


def metawsm(cwd: Path, *args: str | bytes, **metawsm_vars: str) -> subprocess.CompletedProcess[str]:
    """``python -m metawsm ARGS`` in ``cwd`` with only the METAWSM_* variables given."""
    return subprocess.run(
        [sys.executable, "-m", "metawsm", *args],
        env=_env(**metawsm_vars),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def on(
    p: Pipeline, cwd: Path, *args: str | bytes, **extra: str
) -> subprocess.CompletedProcess[str]:
    """``metawsm ARGS`` against the pipeline's database and Redis."""
    stack = {"DATABASE_URL": p.settings.database_url, "BROKER_URL": p.settings.broker_url}
    return metawsm(cwd, *args, **{**stack, "WAIT_TIMEOUT_S": "15", **extra})


def ok_json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, (done.returncode, done.stdout, done.stderr)
    return json.loads(done.stdout)


# 1. The database: found walking up, never created by a read or a write ------------------------


def test_a_command_below_the_stack_directory_finds_its_database_and_elsewhere_creates_none(
    tmp_path: Path,
) -> None:
    stack = tmp_path / "project"
    migrate_to_head(f"sqlite:///{stack / '.metawsm' / 'metawsm.db'}")
    deeper = stack / "src" / "pkg"
    (deeper / ".metawsm").mkdir(parents=True)  # a workspace's legacy-signal .metawsm/: passed by
    assert ok_json(metawsm(deeper, "forum", "list", "--json")) == {"threads": []}
    shown = ok_json(metawsm(deeper, "config", "show", "--json"))
    assert shown["database_url"] == f"sqlite:///{stack / '.metawsm' / 'metawsm.db'}"
    assert shown["database_url_origin"] == (
        f"the nearest .metawsm/metawsm.db walking up from {deeper}"
    )

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for args in (
        ["forum", "list"],
        ["forum", "ask", "--ticket", "T", "--title", "t", "--body", "b"],
    ):
        done = metawsm(elsewhere, *args, BROKER_URL=NO_BROKER_URL)
        assert done.returncode == 3, (args, done.stderr)
        assert f"no metawsm database at {elsewhere / '.metawsm' / 'metawsm.db'}" in done.stderr
        assert "METAWSM_DATABASE_URL" in done.stderr and "or any directory above it" in done.stderr
    assert list(elsewhere.iterdir()) == []  # no stray .metawsm/, no empty database
    origin = ok_json(metawsm(elsewhere, "config", "show", "--json"))["database_url_origin"]
    assert origin == f"no .metawsm/metawsm.db in {elsewhere} or any directory above it"
    via_env = metawsm(elsewhere, "config", "show", DATABASE_URL=f"sqlite:///{tmp_path}/x.db")
    assert "METAWSM_DATABASE_URL in the environment" in via_env.stdout


# 3. run show: the brief, and history reasons that read well ------------------------------------


def test_run_show_prints_the_brief_and_the_history_says_how_the_run_was_created(
    idle_pipeline: Pipeline, tmp_path: Path
) -> None:
    brief = runs.BriefInput(
        goal="ship it", scope="api", done_criteria="tests pass", constraints="no new deps"
    )
    run_id = idle_pipeline.create_run(OPERATOR, brief=brief)
    # The run as an argument: the form that worked before (now deprecated) shows the defect.
    done = on(idle_pipeline, tmp_path, "run", "show", run_id)
    assert done.returncode == 0, done.stderr
    for line in ("goal: ship it", "scope: api", "done_criteria: tests pass"):
        assert f"  {line}" in done.stdout.splitlines(), done.stdout
    assert "constraints: no new deps" in done.stdout
    assert ": created (bootstrap mode)" in done.stdout and "run run created" not in done.stdout


def test_a_missing_validation_gate_names_the_epoch_after_iterate(idle_pipeline: Pipeline) -> None:
    p = idle_pipeline
    run_id = p.create_run(OPERATOR)
    lifecycle.iterate_run(p.container.runtime, run_id, "again", OPERATOR)
    _, unmet = gates.unmet(p.engine, run_id)
    reasons = {g.reason for g in unmet}
    assert "agent alice has no validation signal in epoch 2" in reasons, reasons


# 5. Ctrl-C ------------------------------------------------------------------------------------


def _follow(p: Pipeline, cwd: Path, name: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "metawsm", "forum", name, "--follow", "--json"]
    env = _env(DATABASE_URL=p.settings.database_url, BROKER_URL=p.settings.broker_url)
    return subprocess.Popen(
        argv,
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.mark.parametrize("name", ["events", "watch"])
def test_ctrl_c_ends_a_follow_quietly_with_exit_0(
    pipeline: Pipeline, tmp_path: Path, name: str
) -> None:
    assert pipeline.run("open_thread", ticket="T", thread_id="t-1", title="t", body="b").status == (
        "applied"
    )
    proc = _follow(pipeline, tmp_path, name)
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())  # it printed: it is in its follow loop
        assert first["event_type"] == "forum.thread.opened"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert proc.returncode == 0, err
    notes = [line for line in err.splitlines() if "is deprecated" not in line]
    assert notes == [] and out == ""


@pytest.mark.parametrize("command", ["watch", "operator"])
def test_ctrl_c_ends_watch_and_operator_quietly_with_exit_0(
    idle_pipeline: Pipeline, tmp_path: Path, command: str
) -> None:
    p = idle_pipeline
    run_id = p.create_run(OPERATOR)
    lifecycle.set_agent_status(p.container.runtime, run_id, "alice", "stalled", OPERATOR)
    argv = [sys.executable, "-m", "metawsm", command, "--json"]
    env = _env(DATABASE_URL=p.settings.database_url, BROKER_URL=p.settings.broker_url)
    proc = subprocess.Popen(
        argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        first = json.loads(proc.stdout.readline())  # an alert or a decision: it is following
        assert first["run_id"] == run_id
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert (proc.returncode, err) == (0, "")


def test_ctrl_c_on_a_waiting_write_says_interrupted_and_exits_130(
    idle_pipeline: Pipeline, tmp_path: Path
) -> None:
    p = idle_pipeline  # no worker: the write waits
    argv = [sys.executable, "-m", "metawsm", "forum", "ask", "--ticket", "T", "--title", "t"]
    argv += ["--body", "b", "--wait", "applied", "--timeout", "60"]
    env = _env(DATABASE_URL=p.settings.database_url, BROKER_URL=p.settings.broker_url)
    proc = subprocess.Popen(
        argv,
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        def accepted() -> bool:
            with unit_of_work(p.engine, readonly=True) as s:
                return bool(s.execute(select(func.count()).select_from(ForumCommand)).scalar())

        wait_until(accepted, 30, "the write to be accepted and waiting")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
        proc.wait(timeout=10)
    assert proc.returncode == 130, err
    assert err.strip().splitlines()[-1] == "interrupted"


def test_ctrl_c_while_code_made_from_a_string_runs_still_exits_130(
    idle_pipeline: Pipeline, tmp_path: Path
) -> None:
    # The interrupt lands inside exec() (tests/fixtures/ctrl_c_in_exec.py), where CPython would
    # end a ``python -m`` process by SIGINT (-2) whatever status was asked: seen in CI, 1 in ~60.
    p = idle_pipeline  # no worker: the write waits
    argv = [sys.executable, "-m", "tests.fixtures.ctrl_c_in_exec", "forum", "ask", "--ticket", "T"]
    argv += ["--title", "t", "--body", "b", "--wait", "applied", "--timeout", "60"]
    env = _env(DATABASE_URL=p.settings.database_url, BROKER_URL=p.settings.broker_url)
    done = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 130, done.stderr
    assert done.stderr.strip().splitlines()[-1] == "interrupted"


# 6. Empty results -----------------------------------------------------------------------------


def test_empty_results_say_so_on_stderr_and_are_empty_json(
    idle_pipeline: Pipeline, tmp_path: Path
) -> None:
    p = idle_pipeline
    dlq = on(p, tmp_path, "dlq", "list")
    assert dlq.returncode == 0 and dlq.stdout.split() == [
        "message_id", "status", "topic", "attempts", "last", "failed", "error"
    ]  # fmt: skip
    assert "no dead letters" in dlq.stderr
    assert ok_json(on(p, tmp_path, "dlq", "list", "--json")) == {"dead_letters": []}
    assert ok_json(on(p, tmp_path, "operator", "--once", "--json")) == []
    assert ok_json(on(p, tmp_path, "watch", "--once", "--json")) == []
    operator = on(p, tmp_path, "operator", "--once")
    assert operator.returncode == 0 and operator.stdout == ""
    assert "no new decisions" in operator.stderr
    listed = on(p, tmp_path, "forum", "list", RUN_ID="run-x")
    assert listed.returncode == 0 and listed.stdout == ""
    assert "no threads (filters: run_id=run-x from $METAWSM_RUN_ID)" in listed.stderr
    runs_listed = on(p, tmp_path, "run", "list")
    assert runs_listed.stdout == "" and "no runs" in runs_listed.stderr


def test_status_json_into_a_pipe_is_whole_and_an_error_still_exits_with_its_code(
    idle_pipeline: Pipeline, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # status --json ends its process without the heap's teardown (cli/context.py end_quickly):
    # everything written must still arrive, more than a pipe holds at once (64 KiB).
    p = idle_pipeline
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)  # stdout buffered, as by default
    empty = on(p, tmp_path, "status", "--all", "--json")  # a few bytes: still in the buffer
    assert empty.returncode == 0 and json.loads(empty.stdout)["runs"] == [], empty
    goal = "g" * 12_000
    brief = runs.BriefInput(goal=goal, scope="s", done_criteria="d", constraints="c")
    made = {p.create_run(OPERATOR, brief=brief) for _ in range(8)}
    done = on(p, tmp_path, "status", "--all", "--json")
    assert done.returncode == 0, done.stderr
    assert (
        done.stdout.endswith("}\n") and done.stdout.count("\n") == 1 and len(done.stdout) > 96_000
    )
    shown = json.loads(done.stdout)["runs"]
    assert {r["run_id"] for r in shown} == made and {r["brief"]["goal"] for r in shown} == {goal}
    missing = on(p, tmp_path, "status", "--run-id", "run-nope", "--json")
    assert missing.returncode == 1 and "run run-nope not found" in missing.stderr, missing
    assert ok_json(on(p, tmp_path, "watch", "--all", "--once", "--json")) == []


# command show ---------------------------------------------------------------------------------


def test_command_show_looks_up_a_no_wait_command_later_and_can_wait_for_it(
    idle_pipeline: Pipeline, tmp_path: Path
) -> None:
    p = idle_pipeline
    ask = ["forum", "ask", "--ticket", "T", "--title", "t", "--body", "b", "--no-wait", "--json"]
    sent = ok_json(on(p, tmp_path, *ask))
    command_id = sent["command_id"]
    pending = ok_json(on(p, tmp_path, "command", "show", command_id, "--json"))
    assert (pending["status"], pending["command_type"]) == ("accepted", "open_thread")
    timed_out = on(p, tmp_path, "command", "show", command_id, "--wait", "--timeout", "0.2s")
    assert timed_out.returncode == 4 and "still accepted" in timed_out.stderr
    with p.inprocess_worker():
        done = ok_json(on(p, tmp_path, "command", "show", command_id, "--wait", "--json"))
    assert (done["status"], done["thread_id"]) == ("applied", sent["thread_id"])
    text = on(p, tmp_path, "command", "show", command_id)
    assert text.stdout.split()[:3] == ["applied", "open_thread", command_id]
    missing = on(p, tmp_path, "command", "show", "cmd-nope")
    assert missing.returncode == 1 and "command cmd-nope not found" in missing.stderr


# Actor defaults, durations, errors named by their option ---------------------------------------


def test_an_agent_name_in_the_environment_is_never_an_operators_default(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    p = pipeline
    agent = {"AGENT_NAME": "alice"}
    opened = ok_json(
        on(p, tmp_path, "forum", "ask", "--ticket", "T", "--title", "Which DB?", "--body", "?",
           "--timeout", "1m", "--json", **agent)
    )  # fmt: skip
    thread = opened["thread_id"]
    answered = on(
        p, tmp_path, "forum", "answer", "--thread-id", thread, "--body", "SQLite", **agent
    )
    assert answered.returncode == 0, answered.stderr
    p.settle()
    posts = ok_json(on(p, tmp_path, "forum", "thread", "--thread-id", thread, "--json"))["posts"]
    authors = [f"{post['author_type']}/{post['author_name']}" for post in posts]
    assert authors == ["agent/alice", f"operator/{getpass.getuser()}"]
    named = on(p, tmp_path, "forum", "post", "--thread-id", thread, "--body", "x",
               "--actor-type", "operator", "--json", ACTOR_NAME="olga", **agent)  # fmt: skip
    assert ok_json(named)["status"] == "applied"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["forum", "ask", "--ticket", "T", "--title", " ", "--body", "b"], "--title: is required"),
        (
            ["forum", "ask", "--ticket", "T", "--title", "t", "--body", "é" * 40_000],
            "--body: must be at most 65536 bytes of UTF-8 (got 80000)",
        ),
        (
            ["forum", "ask", "--ticket", "T", "--title", b"caf\xe9", "--body", "b"],
            "--title: is not valid UTF-8 text",
        ),
        (
            ["forum", "signal", "--run-id", "r", "--agent-name", "a", "--type", "guidance_request"],
            "--type guidance_request needs --question",
        ),
        (
            [
                "forum",
                "signal",
                "--run-id",
                "r",
                "--agent-name",
                "a",
                "--type",
                "completion",
                "--summary",
                b"\xff",
            ],
            "--summary: is not valid UTF-8 text",
        ),
        (
            ["forum", "ask", "--ticket", "T", "--title", "t", "--body", "b", "--timeout", "soon"],
            "'soon' is not a duration",
        ),
    ],
    ids=["blank", "body-size", "not-utf8", "signal-missing", "signal-not-utf8", "duration"],
)
def test_bad_input_is_exit_2_naming_the_option_and_records_nothing(
    idle_pipeline: Pipeline, tmp_path: Path, args: list[str | bytes], message: str
) -> None:
    done = on(idle_pipeline, tmp_path, *args)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr, done.stderr
    assert "payload." not in done.stderr and "signal." not in done.stderr
    with unit_of_work(idle_pipeline.engine, readonly=True) as s:
        assert s.execute(select(func.count()).select_from(ForumCommand)).scalar() == 0
