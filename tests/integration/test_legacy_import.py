"""Importing legacy file signals through the pipeline (real database, Redis and worker).

The files become control signals on each agent's control thread, the run moves as the files
meant, a second import changes nothing, and the files are never touched.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result
from sqlalchemy import func, select

from metawsm.cli import cli
from metawsm.errors import UsageError
from metawsm.messages.common import Actor
from metawsm.services import gates, legacy, runs
from metawsm.storage.models import ForumCommand, ForumControlThread, ForumEvent, ForumPost
from metawsm.storage.uow import unit_of_work
from tests.fixtures.pipeline import Pipeline, wait_until

OPERATOR = Actor(type="operator", name="olga")
BRIEF = runs.BriefInput(goal="g", scope="s", done_criteria="tests pass", constraints="c")
REQUEST, RESPONSE = "guidance-request.json", "guidance-response.json"
COMPLETE, VALIDATION = "implementation-complete.json", "validation-result.json"


def bootstrap(p: Pipeline, *agents: str) -> str:
    """A bootstrap run (running) of ``agents`` on TCK-9, its status events published."""
    return p.create_run(OPERATOR, agents, ["TCK-9"], BRIEF)


def write(directory: Path, **files: Any) -> Path:
    """Write each ``name=data`` (``guidance_request=...``) as its legacy file; returns the dir."""
    directory.mkdir(parents=True, exist_ok=True)
    for key, data in files.items():
        name = key.replace("implementation_complete", "implementation-complete")
        name = name.replace("_", "-") + ".json"
        text = data if isinstance(data, str) else json.dumps(data, indent=2) + "\n"
        (directory / name).write_text(text)
    return directory


def import_files(
    p: Pipeline, roots: list[Path], run_id: str, agent: str | None = None, dry: bool = False
) -> legacy.Report:
    """Read, plan and submit, as the CLI does."""
    c = p.container
    scope = legacy.run_scope(c.engine, run_id, agent)
    plan = legacy.plan_import(legacy.read_roots(roots), scope)
    return legacy.import_legacy(c.runtime, plan, dry_run=dry)


def status(p: Pipeline, run_id: str) -> str:
    """The run's status now."""
    return str(runs.run_rows(p.engine, run_id)[0]["status"])


def wait_status(p: Pipeline, run_id: str, expected: str) -> None:
    """Wait until the lifecycle consumer has moved the run to ``expected``."""
    wait_until(lambda: status(p, run_id) == expected, 15, f"run {run_id} to be {expected}")


def threads(p: Pipeline, run_id: str) -> dict[str, list[tuple[str, str | None]]]:
    """agent -> its control thread's signals in thread order: (control type, main field)."""
    main = {"guidance_request": "question", "guidance_answer": "answer"}
    main |= {"completion": "summary", "validation": "status"}
    with unit_of_work(p.engine, readonly=True) as s:
        mapping = dict(
            s.execute(
                select(ForumControlThread.thread_id, ForumControlThread.agent_name).where(
                    ForumControlThread.run_id == run_id
                )
            ).all()
        )
        rows = s.execute(
            select(ForumEvent)
            .where(
                ForumEvent.thread_id.in_(list(mapping)),
                ForumEvent.event_type == "forum.control.signal",
            )
            .order_by(ForumEvent.thread_seq)
        ).scalars()
        found: dict[str, list[tuple[str, str | None]]] = {a: [] for a in mapping.values()}
        for row in rows:
            signal = row.payload["signal"]
            kind = signal["control_type"]
            found[mapping[row.thread_id or ""]].append((kind, signal.get(main[kind])))
        return found


def counts(p: Pipeline) -> list[int]:
    """[commands, events, posts, control threads] in the database."""
    with unit_of_work(p.engine, readonly=True) as s:
        return [
            s.execute(select(func.count()).select_from(model)).scalar_one()
            for model in (ForumCommand, ForumEvent, ForumPost, ForumControlThread)
        ]


def two_agent_roots(tmp_path: Path) -> list[Path]:
    """Alice's workspace root (all four files) and Bob's .metawsm dir (the guide had answered)."""
    write(
        tmp_path / "ws-alice" / ".metawsm",
        guidance_request={"agent": "alice", "question": "Which DB?", "context": {"tables": 3}},
        guidance_response={
            "guidance_id": 1,
            "agent": "alice",
            "question": "Which DB?",
            "answer": "SQLite",
            "answered_at": "2026-02-07T10:00:00Z",
        },
        implementation_complete={"agent": "alice", "summary": "schema done"},
        validation_result={"agent": "alice", "status": "PASSED", "done_criteria": "tests pass"},
    )
    bob = write(
        tmp_path / "ws-bob" / ".metawsm",
        guidance_response={"guidance_id": 2, "agent": "bob", "question": "Q?", "answer": "A."},
        implementation_complete={"agent": "bob", "status": "done"},
        validation_result={
            "run_id": "",
            "agent": "bob",
            "status": "passed",
            "done_criteria": "tests pass ",
        },
    )
    return [tmp_path / "ws-alice", bob]


def test_legacy_files_of_two_agents_become_their_control_threads_and_complete_the_run(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    run_id = bootstrap(pipeline, "alice", "bob")
    report = import_files(pipeline, two_agent_roots(tmp_path), run_id)
    assert report.skipped == []
    assert [i.outcome for i in report.imported] == ["applied"] * 8
    assert not report.failed and not any(i.already_imported for i in report.imported)
    wait_status(pipeline, run_id, "completed")
    assert threads(pipeline, run_id) == {
        "alice": [
            ("guidance_request", "Which DB?"),
            ("guidance_answer", "SQLite"),
            ("completion", "schema done"),
            ("validation", "passed"),
        ],
        "bob": [
            ("guidance_request", "Q?"),
            ("guidance_answer", "A."),
            ("completion", None),
            ("validation", "passed"),
        ],
    }
    assert gates.unmet(pipeline.engine, run_id)[1] == []
    with unit_of_work(pipeline.engine, readonly=True) as s:
        signal_events = s.execute(
            select(ForumEvent).where(ForumEvent.event_type == "forum.control.signal")
        ).scalars()
        by_command = {e.command_id: e for e in signal_events}
        actors = {(e.actor_type, e.actor_name) for e in by_command.values()}
        first = by_command[report.imported[0].signal.command_id].payload["signal"]
    assert actors == {("system", "metawsm-legacy-import"), ("operator", "metawsm-legacy-import")}
    assert first["context"] == '{"tables":3}'


def test_importing_the_same_files_twice_changes_nothing(pipeline: Pipeline, tmp_path: Path) -> None:
    run_id = bootstrap(pipeline, "alice", "bob")
    roots = two_agent_roots(tmp_path)
    before = {p: p.read_bytes() for r in roots for p in legacy.signal_dir(r).iterdir()}
    first = import_files(pipeline, roots, run_id)
    wait_status(pipeline, run_id, "completed")
    pipeline.settle()
    seen = (threads(pipeline, run_id), counts(pipeline), runs.run_history(pipeline.engine, run_id))

    again = import_files(pipeline, roots, run_id)
    pipeline.settle()
    assert [i.signal.command_id for i in again.imported] == [
        i.signal.command_id for i in first.imported
    ]
    assert all(i.already_imported and i.outcome == "applied" for i in again.imported)
    assert (threads(pipeline, run_id), counts(pipeline)) == seen[:2]
    assert runs.run_history(pipeline.engine, run_id) == seen[2]
    assert status(pipeline, run_id) == "completed"
    assert {p: p.read_bytes() for r in roots for p in legacy.signal_dir(r).iterdir()} == before


def test_a_malformed_file_is_reported_by_path_and_skipped_the_rest_imported(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    run_id = bootstrap(pipeline, "alice")
    directory = write(
        tmp_path / ".metawsm",
        guidance_request={"question": "May I drop the table?"},
        implementation_complete={"run_id": "run-20260101-other"},
        validation_result='{"status": "passed", "done_criteria": ',
    )
    report = import_files(pipeline, [tmp_path], run_id)
    reasons = {s.path: s.reason for s in report.skipped}
    assert set(reasons) == {str(directory / VALIDATION), str(directory / COMPLETE)}
    assert reasons[str(directory / VALIDATION)].startswith("malformed: invalid JSON")
    assert reasons[str(directory / COMPLETE)].startswith("run_id mismatch")
    assert [(i.signal.path, i.signal.control_type, i.outcome) for i in report.imported] == [
        (str(directory / REQUEST), "guidance_request", "applied")
    ]
    wait_status(pipeline, run_id, "awaiting_guidance")
    pending = {g.name for g in gates.unmet(pipeline.engine, run_id)[1]}
    assert {"guidance", "completion", "validation"} <= pending


def test_a_dry_run_checks_and_plans_but_submits_nothing(pipeline: Pipeline, tmp_path: Path) -> None:
    run_id = bootstrap(pipeline, "alice", "bob")
    before = counts(pipeline)
    report = import_files(pipeline, two_agent_roots(tmp_path), run_id, dry=True)
    assert [i.outcome for i in report.imported] == ["planned"] * 8
    assert counts(pipeline) == before
    assert status(pipeline, run_id) == "running"


# Through the command line ---------------------------------------------------------------------


def metawsm(p: Pipeline, *args: str) -> Result:
    """``metawsm ARGS`` in-process, against the pipeline's database and broker."""
    env = {
        "METAWSM_DATABASE_URL": p.settings.database_url,
        "METAWSM_BROKER_URL": p.settings.broker_url,
        "METAWSM_WAIT_TIMEOUT_S": "15",
    }
    return CliRunner().invoke(cli, list(args), env=env)


def test_the_cli_imports_prints_json_and_a_second_run_is_a_no_op(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    run_id = bootstrap(pipeline, "alice", "bob")
    roots = two_agent_roots(tmp_path)
    args = ["import", "legacy-signals", "--run-id", run_id]
    args += [a for r in roots for a in ("--root", str(r))]

    dry = metawsm(pipeline, *args, "--dry-run", "--json")
    assert dry.exit_code == 0, dry.output
    assert {i["outcome"] for i in json.loads(dry.stdout)["imported"]} == {"planned"}

    done = metawsm(pipeline, *args, "--json")
    assert done.exit_code == 0, done.output
    data = json.loads(done.stdout)
    assert set(data) == {"imported", "skipped"} and data["skipped"] == []
    assert [(i["agent_name"], i["signal_type"], i["outcome"]) for i in data["imported"]][:4] == [
        ("alice", "guidance_request", "applied"),
        ("alice", "guidance_answer", "applied"),
        ("alice", "completion", "applied"),
        ("alice", "validation", "applied"),
    ]
    wait_status(pipeline, run_id, "completed")

    write(roots[1], guidance_request="{not json")
    again = metawsm(pipeline, *args)
    assert again.exit_code == 0, again.output
    lines = again.stdout.splitlines()
    assert lines[0] == "imported: 8 signal(s)"
    assert all(line.endswith("]") and "(already imported)" in line for line in lines[1:9])
    assert f"  {roots[0]}/.metawsm/{REQUEST} -> guidance_request -> applied" in lines[1]
    assert lines[9] == "skipped: 1 file(s)"
    assert lines[10].startswith(f"  {roots[1]}/{REQUEST} -> malformed: invalid JSON")
    assert status(pipeline, run_id) == "completed"


def test_the_cli_exits_1_when_a_signal_is_rejected_and_2_on_bad_usage(
    pipeline: Pipeline, tmp_path: Path
) -> None:
    run_id = bootstrap(pipeline, "alice")
    write(
        tmp_path / "a" / ".metawsm",
        implementation_complete={},
        validation_result={"status": "passed", "done_criteria": "tests pass"},
    )
    ok = metawsm(
        pipeline, "import", "legacy-signals", "--run-id", run_id, "--root", str(tmp_path / "a")
    )
    assert ok.exit_code == 0, ok.output
    wait_status(pipeline, run_id, "completed")
    gates.close_run(pipeline.container.runtime, run_id, dry_run=False, actor=OPERATOR)
    assert status(pipeline, run_id) == "closed"

    write(tmp_path / "b" / ".metawsm", guidance_request={"question": "late?"})
    late = metawsm(
        pipeline, "import", "legacy-signals", "--run-id", run_id, "--root", str(tmp_path / "b")
    )
    assert late.exit_code == 1
    assert "-> guidance_request -> rejected" in late.stdout
    assert (
        f"rejected: {tmp_path / 'b' / '.metawsm' / REQUEST}: run {run_id} is closed" in late.stderr
    )

    missing = metawsm(
        pipeline, "import", "legacy-signals", "--run-id", run_id, "--root", str(tmp_path / "nope")
    )
    assert missing.exit_code == 2 and "does not exist" in missing.stderr
    stranger = metawsm(
        pipeline, "import", "legacy-signals", "--run-id", run_id, "--root", str(tmp_path / "b"),
        "--agent-name", "mallory",
    )  # fmt: skip
    assert isinstance(stranger.exception, UsageError) and stranger.exception.exit_code == 2


def test_after_a_wait_timeout_the_rest_waits_and_importing_again_finishes_in_order(
    idle_pipeline: Pipeline, tmp_path: Path
) -> None:
    p = idle_pipeline
    run_id = bootstrap(p, "alice")
    write(
        tmp_path / ".metawsm",
        implementation_complete={},
        validation_result={"status": "passed", "done_criteria": "tests pass"},
    )
    c = p.container
    plan = legacy.plan_import(
        legacy.read_roots([tmp_path]), legacy.run_scope(c.engine, run_id, None)
    )
    impatient = c.settings.replace(wait_timeout_s=0.3)
    first = legacy.import_legacy(replace(c.runtime, settings=impatient), plan)
    assert [i.outcome for i in first.imported] == ["timeout", "not_submitted"]
    assert first.timed_out and not first.failed
    assert "still accepted" in (first.imported[0].reason or "")

    with p.worker():
        again = import_files(p, [tmp_path], run_id)
        assert [(i.outcome, i.already_imported) for i in again.imported] == [
            ("applied", True),
            ("applied", False),
        ]
        wait_status(p, run_id, "completed")
    assert threads(p, run_id) == {"alice": [("completion", None), ("validation", "passed")]}
