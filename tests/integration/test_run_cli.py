"""Runs and control signals driven as a user drives them: ``python -m metawsm ...`` subprocesses.

Each command runs in its own process (no terminal on stdin, so the exit codes and the
"stdin is not a terminal" rules are the real ones) against the pipeline's database and Redis,
while the production worker process (``metawsm worker --pool solo``) applies commands and moves
runs. The service-level behaviour is in ``test_run_lifecycle.py``; this file is about what the
command line promises.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner
from sqlalchemy import func, select

from metawsm.cli import cli as cli_group
from metawsm.cli import main
from metawsm.services import runs
from metawsm.storage.models import (
    ForumCommand,
    ForumControlThread,
    ForumEvent,
    ForumOutbox,
    RunEvent,
)
from metawsm.storage.uow import unit_of_work
from tests.fixtures.pipeline import Pipeline, wait_until
from tests.fixtures.workers import worker_environment

METAWSM = [sys.executable, "-m", "metawsm"]
BRIEF = ["--goal", "ship it", "--scope", "api", "--done-criteria", "tests pass"]
BRIEF += ["--constraints", "no new deps"]


@dataclass(frozen=True)
class Done:
    """How one ``metawsm`` invocation ended."""

    returncode: int
    stdout: str
    stderr: str


class _Entry(click.Command):
    """``metawsm.cli.main`` shaped like a click command, so CliRunner sees its exit codes."""

    def main(self, args: Any = None, prog_name: Any = None, **_: Any) -> Any:  # type: ignore[override]
        return main(list(args or ()))


class Shell:
    """Runs ``metawsm`` with the pipeline's settings as METAWSM_* variables and no terminal.

    By default each command is a ``python -m metawsm`` subprocess; with ``inproc`` it goes through
    the same entry point (``metawsm.cli.main``) in this process via CliRunner, which is quicker
    for the set-up steps and reads around the command a test is about.
    """

    def __init__(self, pipeline: Pipeline, cwd: Path, inproc: bool = False) -> None:
        self.p = pipeline
        self.cwd = cwd  # no stray .env or .metawsm/ from the checkout
        self.inproc = inproc

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of one command: the pipeline's settings plus METAWSM_<extra>."""
        env = worker_environment(self.p.settings)
        env.update({f"METAWSM_{k}": v for k, v in extra.items()})
        return env

    def __call__(self, *args: str, **env: str) -> Done:
        """Run ``metawsm ARGS`` to completion."""
        if self.inproc:
            overrides: dict[str, str | None] = {
                k: None for k in os.environ if k.startswith("METAWSM_")
            }
            overrides.update(self.env(**env))
            result = CliRunner().invoke(_Entry("metawsm"), list(args), env=overrides)
            return Done(result.exit_code, result.stdout, result.stderr)
        done = subprocess.run(
            [*METAWSM, *args],
            env=self.env(**env),
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=90,
        )
        return Done(done.returncode, done.stdout, done.stderr)

    def ok(self, *args: str, **env: str) -> str:
        """Run ``metawsm ARGS``, assert exit 0 and return stdout."""
        result = self(*args, **env)
        assert result.returncode == 0, (args, result)
        return result.stdout

    def json(self, *args: str, **env: str) -> Any:
        """Run ``metawsm ARGS --json``, assert exit 0 and return the parsed stdout."""
        return json.loads(self.ok(*args, "--json", **env))

    @contextmanager
    def background(self, *args: str, **env: str) -> Iterator[subprocess.Popen[str]]:
        """Start a ``metawsm ARGS`` subprocess; killed on exit if it is still running."""
        proc = subprocess.Popen(
            [*METAWSM, *args],
            env=self.env(**env),
            cwd=self.cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=30)

    def run_fix(self, fix: str, **placeholders: str) -> str:
        """Run a fix command printed by ``run why``, with its ``<placeholders>`` filled in."""
        words = shlex.split(fix)
        assert words[0] == "metawsm", fix
        filled = [placeholders.get(w, w) for w in words[1:]]
        assert not [w for w in filled if w.startswith("<")], (fix, placeholders)
        return self.ok(*filled)


@pytest.fixture
def sh(process_pipeline: Pipeline, tmp_path: Path) -> Shell:
    """``metawsm`` as subprocesses against the pipeline (with its worker process running)."""
    return Shell(process_pipeline, tmp_path)


@pytest.fixture
def cli(sh: Shell) -> Shell:
    """``metawsm`` in this process (CliRunner) against the same pipeline."""
    return Shell(sh.p, sh.cwd, inproc=True)


def exits(result: Done, code: int, *stderr_parts: str) -> None:
    """Assert the exit code and that stderr says each of ``stderr_parts``."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    for part in stderr_parts:
        assert part in result.stderr, (part, result.stderr)


def create(sh: Shell, *agents: str, mode: str = "run", ticket: str = "TCK-7") -> str:
    """Create a run through the CLI and return its id."""
    args = ["run", "create", "--ticket", ticket, "--mode", mode]
    for agent in agents:
        args += ["--agent", agent]
    if mode == "bootstrap":
        args += BRIEF
    return str(sh.json(*args)["run_id"])


def signal(sh: Shell, run_id: str, agent: str, kind: str, *fields: str) -> dict[str, Any]:
    """Post one control signal through the CLI; returns its applied outcome."""
    out = sh.json(
        "forum", "signal", "--run-id", run_id, "--agent-name", agent, "--type", kind, *fields
    )
    assert out["status"] == "applied", out
    return dict(out)


def complete(sh: Shell, run_id: str, agent: str, criteria: str = "tests pass") -> None:
    """Signal completion and a passed validation for ``agent``."""
    signal(sh, run_id, agent, "completion", "--summary", "done")
    signal(sh, run_id, agent, "validation", "--status", "passed", "--done-criteria", criteria)


def status(p: Pipeline, run_id: str) -> str:
    return str(runs.run_rows(p.engine, run_id)[0]["status"])


def wait_status(p: Pipeline, run_id: str, want: str) -> None:
    wait_until(lambda: status(p, run_id) == want, 15, f"run {run_id} to be {want}")


def history(p: Pipeline, run_id: str) -> list[tuple[str, str]]:
    return [(h["from_status"], h["to_status"]) for h in runs.run_history(p.engine, run_id)]


def unmet(sh: Shell, run_id: str) -> dict[str, dict[str, Any]]:
    """``run why --json``: the unmet gates keyed ``name:agent``."""
    out = sh.json("run", "why", "--run-id", run_id)
    return {f"{g['name']}:{g['agent_name']}": g for g in out["unmet"]}


def footprint(p: Pipeline) -> tuple[int, ...]:
    """Row counts of every table a write would touch."""
    with unit_of_work(p.engine, readonly=True) as s:
        return tuple(
            s.execute(select(func.count()).select_from(table)).scalar_one()
            for table in (ForumCommand, ForumEvent, ForumOutbox, RunEvent)
        )


def fix_of(run_id: str, agent: str, kind: str, *extra: str, actor: str = "agent") -> str:
    """The exact fix command ``run why`` prints for a signal gate."""
    words = ["metawsm", "forum", "signal", "--run-id", run_id, "--agent-name", agent]
    words += ["--type", kind, *extra, "--actor-type", actor]
    return shlex.join(words)


# run create / list / show ----------------------------------------------------------------------


def test_run_create_list_and_show_print_the_run_as_json(sh: Shell, cli: Shell) -> None:
    created = sh.json("run", "create", "--ticket", "TCK-7", "--agent", "a", "--agent", "b")
    run_id = created["run_id"]
    assert run_id.startswith("run-")
    assert (created["status"], created["mode"], created["tickets"]) == ("running", "run", ["TCK-7"])
    assert [a["agent_name"] for a in created["agents"]] == ["a", "b"]
    assert {a["status"] for a in created["agents"]} == {"running"}
    assert (created["brief"], created["control_epoch"]) == (None, 1)
    assert [(h["from_status"], h["to_status"]) for h in created["history"]] == [
        ("created", "planning"),
        ("planning", "running"),
    ]
    assert sh.json("run", "show", "--run-id", run_id) == created

    other = cli.json(
        "run", "create", "--ticket", "X", "--ticket", "Y", "--agent", "c", "--mode", "run"
    )
    listed = sh.json("run", "list")["runs"]
    assert {r["run_id"] for r in listed} == {run_id, other["run_id"]}
    assert next(r for r in listed if r["run_id"] == other["run_id"])["tickets"] == ["X", "Y"]
    lines = cli.ok("run", "list").splitlines()
    assert f"{run_id} running mode=run tickets=TCK-7 agents=a,b" in lines
    text = cli.ok("run", "show", "--run-id", run_id).splitlines()
    assert text[0] == f"run={run_id} status=running mode=run tickets=TCK-7 epoch=1"
    assert text[1:3] == ["agents:", "  agent=a status=running last_signal=None"]


def test_run_create_refuses_duplicate_agents_and_unknown_runs_are_not_found(
    sh: Shell, cli: Shell
) -> None:
    exits(
        sh("run", "create", "--ticket", "T", "--agent", "a", "--agent", "a"),
        1,
        "agent names in a run must be unique",
    )
    exits(sh("run", "show", "--run-id", "run-nope"), 1, "run run-nope not found")
    exits(cli("run", "create", "--ticket", "T"), 2, "--agent")
    exits(cli("run", "create", "--ticket", "T", "--agent", "a", "--mode", "solo"), 2, "'--mode'")
    assert cli.json("run", "list") == {"runs": []}


# bootstrap -------------------------------------------------------------------------------------


def _brief_without(missing: str, blank: bool) -> list[str]:
    flags = dict(zip(BRIEF[::2], BRIEF[1::2], strict=True))
    if blank:
        flags[missing] = "   "
    else:
        del flags[missing]
    return [word for pair in flags.items() for word in pair]


def test_bootstrap_without_a_brief_flag_and_no_terminal_is_exit_2_and_creates_nothing(
    sh: Shell, cli: Shell
) -> None:
    result = sh("bootstrap", "--ticket", "TCK-7", "--agent", "a", *_brief_without("--goal", False))
    exits(result, 2, "--goal is required (stdin is not a terminal)")
    assert result.stdout == ""
    for missing in ("--goal", "--scope", "--done-criteria", "--constraints"):
        for blank in (False, True):  # blank counts as missing
            args = _brief_without(missing, blank)
            exits(cli("bootstrap", "--ticket", "T", "--agent", "a", *args), 2, f"{missing} is")
            exits(
                cli("run", "create", "--mode", "bootstrap", "--ticket", "T", "--agent", "a", *args),
                2,
                f"{missing} is required (stdin is not a terminal)",
            )
    assert cli.json("run", "list") == {"runs": []}
    assert footprint(sh.p) == (0, 0, 0, 0)


def test_bootstrap_with_the_brief_flags_creates_a_bootstrap_run_with_its_brief(
    sh: Shell, cli: Shell
) -> None:
    out = sh.json(
        "run",
        "create",
        "--mode",
        "bootstrap",
        "--ticket",
        "TCK-7",
        "--agent",
        "a",
        "--agent",
        "b",
        *BRIEF,
    )
    assert (out["mode"], out["status"], out["tickets"]) == ("bootstrap", "running", ["TCK-7"])
    assert out["brief"] == {
        "ticket": "TCK-7",
        "goal": "ship it",
        "scope": "api",
        "done_criteria": "tests pass",
        "constraints": "no new deps",
        "merge_intent": "default",
    }
    assert cli.json("run", "show", "--run-id", out["run_id"])["brief"] == out["brief"]
    two = ["run", "create", "--mode", "bootstrap", "--ticket", "T", "--ticket", "U", "--agent", "a"]
    exits(cli(*two, *BRIEF), 1, "a bootstrap run has exactly one ticket")


# forum signal ----------------------------------------------------------------------------------


def test_each_signal_type_is_applied_on_the_agents_control_thread(sh: Shell, cli: Shell) -> None:
    run_id = create(cli, "a", mode="bootstrap")
    env = {"RUN_ID": run_id, "AGENT_NAME": "a"}  # all an agent's environment needs to carry
    asked = sh.json(
        "forum", "signal", "--type", "guidance_request", "--question", "Which DB?", **env
    )
    assert (asked["status"], asked["command_type"]) == ("applied", "control_signal")
    thread_id = asked["thread_id"]
    assert thread_id.startswith(f"fctrl-{run_id}-a")
    wait_status(sh.p, run_id, "awaiting_guidance")

    answered = sh.json(
        "forum", "signal", "--run-id", run_id, "--agent-name", "a",
        "--type", "guidance_answer", "--answer", "SQLite",
    )  # fmt: skip
    assert answered["thread_id"] == thread_id
    wait_status(sh.p, run_id, "running")
    plain = sh.ok("forum", "signal", "--type", "completion", "--summary", "done", **env)
    word, command_type, command_id, thread = plain.split()
    assert (word, command_type, thread) == ("applied", "control_signal", f"thread={thread_id}")
    assert command_id.startswith("cmd")
    validated = sh.json(
        "forum", "signal", "--type", "validation", "--status", "PASSED",
        "--done-criteria", "tests pass", **env,
    )  # fmt: skip
    assert validated["thread_id"] == thread_id
    wait_status(sh.p, run_id, "completed")

    assert history(sh.p, run_id)[2:] == [
        ("running", "awaiting_guidance"),
        ("awaiting_guidance", "running"),
        ("running", "completed"),
    ]
    sh.p.settle()
    detail = cli.json("forum", "thread", "--thread-id", thread_id)
    posts = detail["posts"][1:]  # after the control thread's opening post
    assert [json.loads(p["body"])["control_type"] for p in posts] == [
        "guidance_request",
        "guidance_answer",
        "completion",
        "validation",
    ]
    assert json.loads(posts[3]["body"])["status"] == "passed"
    assert (posts[0]["author_type"], posts[0]["author_name"]) == ("agent", "a")
    assert posts[1]["author_type"] == "operator"  # an answer is an operator's by default
    assert cli.json("run", "show", "--run-id", run_id)["agents"][0]["last_signal_at"] is not None


SUBPROCESS_USAGE_ERRORS = [
    (["--type", "guidance_request", "--question", "   "], "--question: is required"),
    (["--type", "validation", "--status", "maybe", "--done-criteria", "c"], "'--status'"),
    (["--type", "completion", "--answer", "x"], "--answer not allowed with --type completion"),
]
USAGE_ERRORS = [
    (["--type", "guidance_request"], "--type guidance_request needs --question"),
    (["--type", "guidance_answer", "--answer", ""], "--answer: is required"),
    (["--type", "validation", "--status", "passed"], "--type validation needs --done-criteria"),
    (["--type", "validation", "--done-criteria", "c"], "--type validation needs --status"),
    (["--type", "guidance_answer", "--answer", "x", "--question", "q"], "--question not allowed"),
    (["--type", "completion", "--status", "passed"], "--status not allowed"),
    (["--type", "finished"], "'--type'"),
    (["--type", "guidance_request", "--question", "q", "--timeout", "soon"], "'soon' is not a"),
]


def test_invalid_signal_input_is_exit_2_naming_the_field_and_nothing_is_accepted(
    sh: Shell, cli: Shell
) -> None:
    run_id = create(cli, "a")
    before = footprint(sh.p)
    for args, says in SUBPROCESS_USAGE_ERRORS:
        exits(sh("forum", "signal", "--run-id", run_id, "--agent-name", "a", *args), 2, says)
    for args, says in USAGE_ERRORS:
        exits(cli("forum", "signal", "--run-id", run_id, "--agent-name", "a", *args), 2, says)
    no_run = cli("forum", "signal", "--agent-name", "a", "--type", "completion")
    exits(no_run, 2, "--run-id is required (or set METAWSM_RUN_ID)")
    no_agent = cli("forum", "signal", "--run-id", run_id, "--type", "completion")
    exits(no_agent, 2, "--agent-name is required (or set METAWSM_AGENT_NAME)")
    assert footprint(sh.p) == before


def test_a_signal_breaking_a_rule_is_exit_1_with_the_reason(sh: Shell, cli: Shell) -> None:
    run_id = create(cli, "a")
    result = sh(
        "forum", "signal", "--run-id", "run-nope", "--agent-name", "a", "--type", "completion"
    )
    exits(result, 1, "rejected: run run-nope not found")
    assert result.stdout.split()[:2] == ["rejected", "control_signal"]
    cases = [
        (["--run-id", run_id, "--agent-name", "zed"], f"agent zed is not in run {run_id}"),
        (
            ["--run-id", run_id, "--agent-name", "a", "--ticket", "OTHER"],
            f"ticket OTHER is not a ticket of run {run_id}",
        ),
    ]
    for args, says in cases:
        result = cli("forum", "signal", *args, "--type", "completion", "--json")
        exits(result, 1, f"rejected: {says}")
        assert (json.loads(result.stdout)["status"], json.loads(result.stdout)["reason"]) == (
            "rejected",
            says,
        )
    assert status(sh.p, run_id) == "running"


# --wait on a guidance request ------------------------------------------------------------------


@pytest.mark.parametrize("as_json", [False, True], ids=["plain", "json"])
def test_wait_blocks_until_another_process_answers_and_prints_the_answer(
    sh: Shell, cli: Shell, as_json: bool
) -> None:
    run_id = create(cli, "a", "b", mode="bootstrap")
    ask = ["forum", "signal", "--type", "guidance_request", "--question", "Which DB?"]
    ask += ["--wait", "--timeout", "20s"] + (["--json"] if as_json else [])
    with sh.background(*ask, RUN_ID=run_id, AGENT_NAME="b") as waiter:
        wait_status(sh.p, run_id, "awaiting_guidance")
        time.sleep(0.5)
        assert waiter.poll() is None, "the agent must block until it is answered"
        sh.ok(
            "forum", "signal", "--run-id", run_id, "--agent-name", "b",
            "--type", "guidance_answer", "--answer", "Use SQLite",
        )  # fmt: skip
        out, err = waiter.communicate(timeout=30)
    assert waiter.returncode == 0, (out, err)
    if as_json:
        answer = json.loads(out)
        assert (answer["answered"], answer["answer"]) == (True, "Use SQLite")
        assert answer["answered_by"].startswith("operator/")
        assert answer["thread_id"].startswith(f"fctrl-{run_id}-b")
    else:
        assert out == "Use SQLite\n"
    wait_status(sh.p, run_id, "running")


def test_forum_answer_on_a_control_thread_is_the_guidance_answer_the_agent_waits_for(
    sh: Shell, cli: Shell
) -> None:
    run_id = create(cli, "a", "b", mode="bootstrap")
    ask = ["forum", "signal", "--type", "guidance_request", "--question", "Which DB?"]
    with sh.background(
        *ask, "--wait", "--timeout", "20s", "--json", RUN_ID=run_id, AGENT_NAME="b"
    ) as waiter:
        wait_status(sh.p, run_id, "awaiting_guidance")
        thread_id = _control_thread(sh.p, run_id, "b")
        answered = cli.json("forum", "answer", "--thread-id", thread_id, "--body", "Use SQLite")
        assert (answered["status"], answered["thread_id"]) == ("applied", thread_id)
        out, err = waiter.communicate(timeout=30)
    assert waiter.returncode == 0, (out, err)
    answer = json.loads(out)
    assert (answer["answered"], answer["answer"], answer["thread_id"]) == (
        True, "Use SQLite", thread_id,
    )  # fmt: skip
    wait_status(sh.p, run_id, "running")
    assert "guidance:b" not in unmet(cli, run_id)
    with unit_of_work(sh.p.engine, readonly=True) as s:
        kinds = (
            s.execute(select(ForumEvent.event_type).where(ForumEvent.thread_id == thread_id))
            .scalars()
            .all()
        )
    # Recorded as the agent's control signal, not as a forum answer that moves the thread.
    assert "forum.state.changed" not in kinds
    assert kinds.count("forum.control.signal") == 2


@pytest.mark.parametrize(
    "args",
    [
        ["answer", "--body", "fine"],
        ["assign", "--assignee", "bob"],
        ["priority", "--priority", "high"],
        ["state", "--state", "triaged"],
        ["close"],
    ],
    ids=["answer", "assign", "priority", "state", "close"],
)
def test_generic_writes_on_a_control_thread_without_pending_guidance_are_rejected(
    cli: Shell, args: list[str]
) -> None:
    run_id = create(cli, "a", mode="bootstrap")
    thread_id = signal(cli, run_id, "a", "completion")["thread_id"]
    before = footprint(cli.p)
    result = cli("forum", args[0], "--thread-id", thread_id, *args[1:])
    exits(result, 1, "control thread", f"metawsm forum signal --run-id {run_id} --agent-name a")
    commands, events, _, run_events = footprint(cli.p)
    # Only the rejected command itself was recorded: no event, no run change.
    assert (commands, events, run_events) == (before[0] + 1, before[1], before[3])


def _control_thread(p: Pipeline, run_id: str, agent: str) -> str:
    with unit_of_work(p.engine, readonly=True) as s:
        return str(
            s.execute(
                select(ForumControlThread.thread_id).where(
                    ForumControlThread.run_id == run_id, ForumControlThread.agent_name == agent
                )
            ).scalar_one()
        )


def test_wait_without_an_answer_exits_4_after_the_timeout(sh: Shell, cli: Shell) -> None:
    run_id = create(cli, "a", mode="bootstrap")
    started = time.monotonic()
    result = sh(
        "forum", "signal", "--run-id", run_id, "--agent-name", "a",
        "--type", "guidance_request", "--question", "anyone?", "--wait", "--timeout", "2s",
    )  # fmt: skip
    exits(result, 4, "no guidance answer", "within 2 s")
    assert time.monotonic() - started >= 2
    assert result.stdout == ""
    assert status(sh.p, run_id) == "awaiting_guidance"  # the question stays pending
    assert unmet(cli, run_id)["guidance:a"]["reason"] == "agent a has pending guidance: anyone?"


def test_wait_exits_5_when_the_run_is_stopped_meanwhile(sh: Shell, cli: Shell) -> None:
    run_id = create(cli, "a", mode="bootstrap")
    ask = ["forum", "signal", "--type", "guidance_request", "--question", "hello?"]
    with sh.background(*ask, "--wait", "--timeout", "20s", RUN_ID=run_id, AGENT_NAME="a") as w:
        wait_status(sh.p, run_id, "awaiting_guidance")
        assert sh.ok("run", "stop", "--run-id", run_id) == f"run {run_id} stopped\n"
        out, err = w.communicate(timeout=30)
    assert w.returncode == 5, (out, err)
    assert f"run {run_id} is stopped; no answer will come" in err
    assert out == ""


# run why and the fixes it prints -----------------------------------------------------------------


def test_run_why_names_every_unmet_gate_with_its_exact_fix_and_each_fix_meets_it(
    sh: Shell, cli: Shell
) -> None:
    run_id = create(cli, "a", "b", mode="bootstrap")
    signal(cli, run_id, "a", "guidance_request", "--question", "Which DB?")
    signal(cli, run_id, "b", "validation", "--status", "passed", "--done-criteria", "all good")
    wait_status(sh.p, run_id, "awaiting_guidance")
    cli.ok("run", "stop", "--run-id", run_id)

    gates = sh.json("run", "why", "--run-id", run_id)
    assert (gates["run_id"], gates["status"], gates["mode"]) == (run_id, "stopped", "bootstrap")
    criteria = ("--status", "passed", "--done-criteria", "tests pass")
    expected = [
        ("status", None, "run is stopped, not completed", f"metawsm run resume --run-id {run_id}"),
        (
            "guidance",
            "a",
            "agent a has pending guidance: Which DB?",
            fix_of(run_id, "a", "guidance_answer", "--answer", "<answer>", actor="operator"),
        ),
        (
            "completion",
            "a",
            "agent a has not signalled completion in epoch 1",
            fix_of(run_id, "a", "completion", "--summary", "<summary>"),
        ),
        (
            "validation",
            "a",
            "agent a has no validation signal in epoch 1",
            fix_of(run_id, "a", "validation", *criteria),
        ),
        (
            "completion",
            "b",
            "agent b has not signalled completion in epoch 1",
            fix_of(run_id, "b", "completion", "--summary", "<summary>"),
        ),
        (
            "validation",
            "b",
            "agent b validation done_criteria does not match the brief",
            fix_of(run_id, "b", "validation", *criteria),
        ),
    ]
    assert [(g["name"], g["agent_name"], g["reason"], g["fix"]) for g in gates["unmet"]] == expected
    assert all(g["met"] is False for g in gates["unmet"])
    text = sh.ok("run", "why", "--run-id", run_id).splitlines()
    assert text[0] == f"run {run_id} (stopped): 6 gate(s) not met"
    assert text[1:] == [
        line for _, _, reason, fix in expected for line in (f"- {reason}", f"    fix: {fix}")
    ]

    # Each agent gate is met by its own fix; the status gate (completed) follows from the others,
    # so its fix, resume, is run last.
    for name, agent, _, fix in expected[1:]:
        sh.run_fix(fix, **{"<answer>": "Use SQLite", "<summary>": "done"})
        assert f"{name}:{agent}" not in unmet(cli, run_id), (name, agent)
    assert list(unmet(cli, run_id)) == ["status:None"]
    assert sh.run_fix(expected[0][3]) == f"run {run_id} completed\n"
    assert unmet(cli, run_id) == {}
    assert (
        sh.ok("run", "why", "--run-id", run_id)
        == f"run {run_id} (completed): every close gate is met\n"
    )


def test_run_why_fixes_in_a_standard_run_fill_in_the_done_criteria_placeholder(
    sh: Shell, cli: Shell
) -> None:
    run_id = create(cli, "a")
    gates = unmet(cli, run_id)
    assert gates["status:None"]["fix"] is None  # running: what is left is the other gates
    assert gates["validation:a"]["fix"] == fix_of(
        run_id, "a", "validation", "--status", "passed", "--done-criteria", "<done criteria>"
    )
    for key in ("completion:a", "validation:a"):
        sh.run_fix(gates[key]["fix"], **{"<summary>": "done", "<done criteria>": "it works"})
        assert key not in unmet(cli, run_id)
    wait_status(sh.p, run_id, "completed")
    assert unmet(cli, run_id) == {}


def test_run_why_of_a_run_failed_by_an_agent_names_the_agent_and_the_fixes_bring_it_back(
    sh: Shell, cli: Shell
) -> None:
    run_id = create(cli, "a", "b")
    complete(cli, run_id, "a", "ok")
    cli.ok("run", "agent-status", "--run-id", run_id, "--agent-name", "b", "--status", "failed")
    assert status(sh.p, run_id) == "failed"

    gates = sh.json("run", "why", "--run-id", run_id)["unmet"]
    assert [(g["name"], g["agent_name"], g["reason"], g["fix"]) for g in gates[:2]] == [
        (
            "agent",
            "b",
            "agent b is reported failed",
            f"metawsm run agent-status --run-id {run_id} --agent-name b --status running",
        ),
        ("status", None, "run is failed, not completed", f"metawsm run resume --run-id {run_id}"),
    ]
    # Top to bottom: report the agent back, resume the run, then the agent's own signals.
    assert sh.run_fix(gates[0]["fix"]) == f"agent b running; run {run_id} failed\n"
    assert "agent:b" not in unmet(cli, run_id)
    assert sh.run_fix(gates[1]["fix"]) == f"run {run_id} running\n"
    for gate in gates[2:]:
        sh.run_fix(gate["fix"], **{"<summary>": "done", "<done criteria>": "ok"})
    wait_status(sh.p, run_id, "completed")
    assert unmet(cli, run_id) == {}


# close -----------------------------------------------------------------------------------------


def test_close_dry_run_changes_nothing_and_close_closes_a_passing_run(
    sh: Shell, cli: Shell
) -> None:
    run_id = create(cli, "a", mode="bootstrap")
    before = cli.json("run", "show", "--run-id", run_id), footprint(sh.p)
    refused = sh("close", "--run-id", run_id, "--dry-run")
    exits(
        refused,
        1,
        f"run {run_id} cannot close: run is running, not completed",
        f"see: metawsm run why --run-id {run_id}",
    )
    as_json = cli("close", "--run-id", run_id, "--json")
    exits(as_json, 1, "cannot close")
    report = json.loads(as_json.stdout)
    assert (report["run_id"], report["closed"]) == (run_id, False)
    assert [g["name"] for g in report["unmet"]] == ["status", "completion", "validation"]
    assert (cli.json("run", "show", "--run-id", run_id), footprint(sh.p)) == before

    complete(cli, run_id, "a")
    wait_status(sh.p, run_id, "completed")
    sh.p.settle()
    before = cli.json("run", "show", "--run-id", run_id), footprint(sh.p)
    dry = sh.ok("close", "--run-id", run_id, "--dry-run")
    assert dry == f"run {run_id}: every close gate passes (dry run; nothing changed)\n"
    assert cli.json("close", "--run-id", run_id, "--dry-run") == {
        "run_id": run_id,
        "closed": False,
        "dry_run": True,
        "status": "completed",
    }
    assert (cli.json("run", "show", "--run-id", run_id), footprint(sh.p)) == before

    assert sh.ok("close", "--run-id", run_id) == f"run {run_id} closed\n"
    assert history(sh.p, run_id)[-2:] == [("completed", "closing"), ("closing", "closed")]
    assert cli.json("close", "--run-id", run_id)["closed"] is True  # closing again: a no-op
    assert len(history(sh.p, run_id)) == len(before[0]["history"]) + 2

    # A closed run is final.
    exits(
        sh("run", "resume", "--run-id", run_id), 1, f"run {run_id} cannot go from closed to running"
    )
    exits(
        cli("run", "stop", "--run-id", run_id), 1, f"run {run_id} is closed; it cannot be stopped"
    )
    exits(
        cli("run", "iterate", "--run-id", run_id, "--feedback", "more"),
        1,
        "is closed; it cannot iterate",
    )
    exits(
        cli("forum", "signal", "--run-id", run_id, "--agent-name", "a", "--type", "completion"),
        1,
        f"rejected: run {run_id} is closed",
    )
    assert status(sh.p, run_id) == "closed"


# stop / resume / iterate / agent-status --------------------------------------------------------


def test_stop_and_resume_follow_the_table_and_an_illegal_one_is_exit_1(
    sh: Shell, cli: Shell
) -> None:
    run_id = create(cli, "a")
    assert sh.ok("run", "stop", "--run-id", run_id) == f"run {run_id} stopped\n"
    assert history(sh.p, run_id)[-2:] == [("running", "stopping"), ("stopping", "stopped")]
    steps = len(history(sh.p, run_id))
    assert (
        cli.ok("run", "stop", "--run-id", run_id) == f"run {run_id} stopped\n"
    )  # already stopped: no-op
    assert len(history(sh.p, run_id)) == steps
    assert sh.ok("run", "resume", "--run-id", run_id) == f"run {run_id} running\n"
    assert history(sh.p, run_id)[-1] == ("stopped", "running")
    # Same status is always allowed: resuming a running run changes nothing.
    assert cli.ok("run", "resume", "--run-id", run_id) == f"run {run_id} running\n"
    assert len(history(sh.p, run_id)) == steps + 1

    complete(cli, run_id, "a", "anything")
    wait_status(sh.p, run_id, "completed")
    exits(
        sh("run", "stop", "--run-id", run_id), 1, f"run {run_id} is completed; it cannot be stopped"
    )
    exits(cli("run", "stop", "--run-id", "run-nope"), 1, "run run-nope not found")
    exits(cli("run", "resume", "--run-id", "run-nope"), 1, "run run-nope not found")
    assert status(sh.p, run_id) == "completed"


def test_iterate_moves_a_completed_run_back_to_running_in_a_new_epoch(
    sh: Shell, cli: Shell
) -> None:
    run_id = create(cli, "a", mode="bootstrap")
    complete(cli, run_id, "a")
    wait_status(sh.p, run_id, "completed")
    assert unmet(cli, run_id) == {}

    out = sh.ok("run", "iterate", "--run-id", run_id, "--feedback", "add docs")
    assert out.splitlines()[-1] == f"run {run_id} running; control epoch 2"
    shown = cli.json("run", "show", "--run-id", run_id)
    assert (shown["status"], shown["control_epoch"]) == ("running", 2)
    assert shown["history"][-1]["reason"] == "iterate (epoch 2): add docs"
    gates = unmet(cli, run_id)
    assert set(gates) == {"status:None", "completion:a", "validation:a"}
    assert gates["completion:a"]["reason"] == "agent a has not signalled completion in epoch 2"

    thread_id = signal(cli, run_id, "a", "completion")["thread_id"]
    sh.p.settle()
    bodies = [p["body"] for p in cli.json("forum", "thread", "--thread-id", thread_id)["posts"]]
    assert "Operator feedback: add docs" in bodies
    assert status(sh.p, run_id) == "running"  # the epoch-1 validation no longer counts
    signal(cli, run_id, "a", "validation", "--status", "passed", "--done-criteria", "tests pass")
    wait_status(sh.p, run_id, "completed")
    assert [h[1] for h in history(sh.p, run_id)[-2:]] == ["running", "completed"]


def test_agent_status_failed_fails_a_running_run(sh: Shell, cli: Shell) -> None:
    run_id = create(cli, "a", "b")
    out = sh.ok(
        "run", "agent-status", "--run-id", run_id, "--agent-name", "b", "--status", "failed"
    )
    assert out == f"agent b failed; run {run_id} failed\n"
    shown = cli.json("run", "show", "--run-id", run_id)
    assert shown["status"] == "failed"
    assert {a["agent_name"]: a["status"] for a in shown["agents"]} == {
        "a": "running",
        "b": "failed",
    }
    assert shown["history"][-1]["reason"] == "agent reported failed: b"
    exits(
        cli("run", "agent-status", "--run-id", run_id, "--agent-name", "zed", "--status", "idle"),
        1,
        f"agent zed is not in run {run_id}",
    )
    exits(
        cli("run", "agent-status", "--run-id", run_id, "--agent-name", "a", "--status", "sleepy"),
        2,
        "'--status'",
    )


def test_agent_status_failed_fails_a_run_awaiting_guidance(sh: Shell, cli: Shell) -> None:
    run_id = create(cli, "a", mode="bootstrap")
    signal(cli, run_id, "a", "guidance_request", "--question", "stuck?")
    wait_status(sh.p, run_id, "awaiting_guidance")
    cli.ok("run", "agent-status", "--run-id", run_id, "--agent-name", "a", "--status", "failed")
    assert history(sh.p, run_id)[-1] == ("awaiting_guidance", "failed")


def test_the_run_group_help_lists_its_commands() -> None:
    result = CliRunner().invoke(cli_group, ["run", "--help"])
    assert result.exit_code == 0
    for command in ("create", "list", "show", "stop", "resume", "why", "iterate", "agent-status"):
        assert command in result.output
