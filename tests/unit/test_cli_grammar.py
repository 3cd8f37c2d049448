"""One grammar for the whole command line (issue 14), checked by walking every command.

Every command (and group) is loaded from the lazy table and its parameters are inspected:
durations are one type that reads ``30``, ``30s``, ``0.5m``, ``1h`` alike; a run is taken as
``--run-id`` with METAWSM_RUN_ID as its default (the old positional form still works, with a
deprecation note); help reads as plain sentences (no reStructuredText backticks, no internal
words) and ends with one example; the exit codes are listed one per line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

import metawsm
from metawsm.cli import COMMANDS, cli
from metawsm.cli.durations import Duration, parse_duration
from metawsm.cli.lazy import load_target

SOURCE_ROOT = str(Path(metawsm.__file__).resolve().parents[1])
# Options that are numbers but not lengths of time (what they count is in their name or help).
NOT_DURATIONS = {("drill", "rate")}
DURATION_WORDS = ("timeout", "refresh", "interval", "duration")
BRIEF = ["--goal", "g", "--scope", "s", "--done-criteria", "d", "--constraints", "c"]


def _walk(
    command: click.Command, path: tuple[str, ...], hidden: bool = False
) -> Iterator[tuple[str, click.Command, bool]]:
    hidden = hidden or command.hidden
    yield " ".join(path), command, hidden
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from _walk(sub, (*path, name), hidden)


def every_command() -> list[tuple[str, click.Command, bool]]:
    """Every command and group of ``metawsm`` by its command line, and whether it is hidden
    (an old name, or under one)."""
    found: list[tuple[str, click.Command, bool]] = []
    for name, entry in sorted(COMMANDS.items()):
        command = load_target(entry.target)
        if isinstance(command, click.Group):  # the subcommands a lazy entry adds on load
            for sub, target in entry.subcommands.items():
                if sub not in command.commands:
                    command.add_command(load_target(target), sub)
        found += list(_walk(command, (name,)))
    return found


WALKED = every_command()
COMMAND_LINES = [(line, c) for line, c, _ in WALKED]
VISIBLE = [(line, c) for line, c, hidden in WALKED if not hidden]


def _options(command: click.Command) -> list[click.Option]:
    return [p for p in command.params if isinstance(p, click.Option)]


def _help(command: click.Command, line: str) -> str:
    with click.Context(command, info_name=f"metawsm {line}", terminal_width=100) as ctx:
        return command.get_help(ctx)


# Durations --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 30), ("30s", 30), ("0.5m", 30), ("5m", 300), ("1h", 3600), ("1.5", 1.5), ("2H", 7200)],
)
def test_a_duration_reads_seconds_minutes_and_hours(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "5 min", "-3", "1d", "30ms", "abc"])
def test_anything_else_is_not_a_duration_and_the_message_shows_the_forms(text: str) -> None:
    with pytest.raises(ValueError, match=r"is not a duration: give seconds .*\(5m, 1h\)"):
        parse_duration(text)


def test_every_option_that_takes_a_length_of_time_is_a_duration() -> None:
    durations = []
    for line, command in COMMAND_LINES:
        for option in _options(command):
            kind = option.type
            numeric = isinstance(kind, click.types.FloatParamType) and not isinstance(
                kind, Duration
            )
            timed = any(word in (option.name or "") for word in DURATION_WORDS)
            if (line, option.name) in NOT_DURATIONS:
                continue
            assert not numeric, f"metawsm {line} {option.opts[0]} is a bare number of seconds"
            if timed:
                assert isinstance(kind, Duration), f"metawsm {line} {option.opts[0]}"
                durations.append((line, option))
    assert {opt.opts[0] for _, opt in durations} >= {"--timeout", "--refresh", "--interval"}
    for line, option in durations:
        kind = option.type
        same = {kind.convert(text, option, None) for text in ("60", "60s", "1m")}
        assert same == {60.0}, f"metawsm {line} {option.opts[0]}"
        assert kind.convert("1h", option, None) == 3600.0


def test_a_bad_duration_is_a_usage_error_naming_the_option() -> None:
    result = CliRunner().invoke(cli, ["watch", "--refresh", "soon"])
    assert result.exit_code == 2
    assert "--refresh" in result.output and "'soon' is not a duration" in result.output


# The run ---------------------------------------------------------------------------------------

RUN_TAKERS = [(line, c) for line, c in COMMAND_LINES if any(p.name == "run_id" for p in c.params)]


def test_the_commands_that_take_a_run_are_the_expected_ones() -> None:
    lines = {line for line, _ in RUN_TAKERS}
    expected = {"close", "status", "watch", "operator", "forum signal", "forum ask"}
    expected |= {"forum list", "forum search", "forum events", "import legacy-signals"}
    expected |= {f"run {name}" for name in ("show", "stop", "resume", "why", "iterate")}
    expected |= {"run agent-status"}
    assert expected <= lines


@pytest.mark.parametrize(("line", "command"), RUN_TAKERS, ids=[line for line, _ in RUN_TAKERS])
def test_every_command_that_takes_a_run_takes_it_as_run_id_defaulting_to_the_environment(
    line: str, command: click.Command, monkeypatch: pytest.MonkeyPatch
) -> None:
    [param] = [p for p in command.params if p.name == "run_id"]
    assert isinstance(param, click.Option) and param.opts == ["--run-id"]
    monkeypatch.setenv("METAWSM_RUN_ID", "run-from-env")
    with click.Context(command) as ctx:
        assert param.get_default(ctx) == "run-from-env"
    assert not [p for p in command.params if isinstance(p, click.Argument) and "run" in str(p.name)
                and p.name != "legacy_run_id"]  # fmt: skip
    assert "RUN" not in command.collect_usage_pieces(click.Context(command))


LEGACY = [(line, c) for line, c in RUN_TAKERS if any(p.name == "legacy_run_id" for p in c.params)]


def _invoke(args: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    path = [SOURCE_ROOT, *filter(None, [os.environ.get("PYTHONPATH")])]
    clean = {k: v for k, v in os.environ.items() if not k.startswith("METAWSM_")}
    clean.update(PYTHONPATH=os.pathsep.join(path), HOME=str(tmp_path), **env)
    return subprocess.run(
        [sys.executable, "-m", "metawsm", *args],
        capture_output=True,
        text=True,
        env=clean,
        cwd=tmp_path,
        timeout=60,
    )


def test_the_run_as_an_argument_still_works_with_a_deprecation_note(tmp_path: Path) -> None:
    assert {line for line, _ in LEGACY} == {
        f"run {name}" for name in ("show", "stop", "resume", "why", "iterate", "agent-status")
    }
    # No database here: each command gets as far as opening it (exit 3), after the note.
    done = _invoke(["run", "show", "run-7"], tmp_path)
    assert done.returncode == 3, done.stderr
    note = "warning: the run as an argument is deprecated and goes in the next release"
    assert f"{note}: use --run-id run-7" in done.stderr
    both = _invoke(["run", "why", "run-7", "--run-id", "run-8"], tmp_path)
    assert both.returncode == 2 and "give the run once" in both.stderr


def test_a_command_that_needs_a_run_names_the_option_and_the_variable(tmp_path: Path) -> None:
    for args in (["run", "show"], ["close"], ["forum", "signal", "--type", "completion"]):
        done = _invoke(args, tmp_path)
        assert done.returncode == 2, (args, done.stderr)
        assert "--run-id is required (or set METAWSM_RUN_ID)" in done.stderr, args
    agent = _invoke(["forum", "signal", "--type", "completion"], tmp_path, METAWSM_RUN_ID="r")
    assert agent.returncode == 2 and "--agent-name is required (or set METAWSM_AGENT_NAME)" in (
        agent.stderr
    )


# Old names -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("old", "new", "group"),
    [
        (
            ["bootstrap", "--ticket", "T", "--agent", "a", *BRIEF],
            "metawsm run create --mode bootstrap",
            [],
        ),
        (["forum", "watch"], "metawsm forum events", ["forum"]),
        (["migrate", "legacy-signals", "--run-id", "r", "--root", "."], "metawsm import", []),
    ],
    ids=["bootstrap", "forum watch", "migrate"],
)
def test_an_old_name_still_runs_says_which_name_to_use_and_is_left_out_of_help(
    old: list[str], new: str, group: list[str], tmp_path: Path
) -> None:
    done = _invoke(old, tmp_path)
    assert f"is deprecated and goes in the next release: use {new}" in done.stderr
    assert done.returncode == 3, done.stderr  # it ran the command: no database here
    listed = CliRunner().invoke(cli, [*group, "--help"]).output.split("Commands:")[1]
    assert f"  {old[len(group)]} " not in listed


# Help --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("line", "command"), VISIBLE, ids=[line for line, _ in VISIBLE])
def test_every_help_reads_as_plain_sentences_and_ends_with_one_example(
    line: str, command: click.Command
) -> None:
    text = _help(command, line)
    assert "`" not in text, f"metawsm {line} --help has backticks"
    assert "entrypoint" not in text and "parses, validates" not in text
    blocks = text.split("\n\n")
    example = [b for b in blocks if b.strip().startswith("Example:")]
    assert len(example) == 1, f"metawsm {line} --help: {len(example)} examples"
    body = example[0].strip().splitlines()[1:]
    assert body and body[0].strip().startswith(f"metawsm {line.split()[0]}"), body
    # The example is the last part of the description (before Options / Commands).
    after = text.split(example[0], 1)[1]
    assert after.strip().startswith(("Options:", "Commands:")), after[:80]


def test_the_exit_codes_are_listed_one_per_line_with_watch_6_and_ctrl_c() -> None:
    text = CliRunner().invoke(cli, ["--help"]).output
    lines = [line.strip() for line in text.splitlines()]
    for code in ("0", "1", "2", "3", "4", "5", "6", "130"):
        assert any(line.startswith(f"{code}  ") for line in lines), code
    assert any(line.startswith("6") and "watch" in line for line in lines)
    watch = CliRunner().invoke(cli, ["watch", "--help"]).output
    assert "6 guidance_needed" in watch


def test_python_m_metawsm_calls_itself_metawsm(tmp_path: Path) -> None:
    done = _invoke(["--version"], tmp_path)
    assert done.stdout.strip() == f"metawsm, version {metawsm.__version__}"
    usage = _invoke(["frobnicate"], tmp_path)
    assert usage.returncode == 2 and "Usage: metawsm [OPTIONS]" in usage.stderr
