"""``metawsm schema``: lists message names and prints their JSON Schema."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

from metawsm.cli import cli
from metawsm.errors import EXIT_USAGE
from metawsm.messages.registry import MESSAGES, json_schema


def run(*args: str) -> tuple[int, str, str]:
    """Invoke ``metawsm schema <args>``: (exit code, stdout, stderr)."""
    result = CliRunner().invoke(cli, ["schema", *args])
    return result.exit_code, result.stdout, result.stderr


def test_schema_is_a_registered_top_level_command() -> None:
    # Commands load lazily: ask the group, as click does, not its cache of loaded ones.
    with click.Context(cli) as ctx:
        assert "schema" in cli.list_commands(ctx)
        assert cli.get_command(ctx, "schema") is not None


def test_without_a_name_it_lists_every_message_name_one_per_line() -> None:
    code, out, err = run()
    assert code == 0, err
    assert out.splitlines() == sorted(MESSAGES)
    assert err == ""


def test_the_list_names_commands_events_and_control_payloads() -> None:
    names = run()[1].splitlines()
    for expected in ("command", "command.open_thread", "event", "event.run.status.changed"):
        assert expected in names
    assert "control.guidance_request" in names


def test_the_list_flag_prints_the_same_list() -> None:
    assert run("--list") == run()


def test_the_list_can_be_printed_as_a_json_array() -> None:
    code, out, _ = run("--list", "--json")
    assert code == 0
    assert json.loads(out) == sorted(MESSAGES)


@pytest.mark.parametrize("name", sorted(MESSAGES))
def test_a_known_name_prints_its_json_schema_on_stdout(name: str) -> None:
    code, out, err = run(name)
    assert code == 0, err
    assert json.loads(out) == json_schema(name)
    assert err == ""


def test_the_schema_is_indented_json() -> None:
    out = run("control.validation")[1]
    assert out.startswith("{\n  ")


def test_a_payload_schema_forbids_unknown_fields_and_lists_required_ones() -> None:
    schema = json.loads(run("control.validation")[1])
    assert schema["additionalProperties"] is False
    assert set(schema["required"]) == {"run_id", "agent_name", "status", "done_criteria"}


def test_the_command_schema_is_discriminated_by_command_type() -> None:
    schema = json.loads(run("command")[1])
    assert schema["discriminator"]["propertyName"] == "command_type"


def test_an_unknown_name_is_a_usage_error_naming_the_known_names() -> None:
    code, out, err = run("command.reopen_thread")
    assert code == EXIT_USAGE
    assert out == ""
    assert "unknown message name 'command.reopen_thread'" in err
    assert "command.open_thread" in err
    assert "control.validation" in err


def test_a_name_together_with_the_list_flag_is_a_usage_error() -> None:
    code, out, err = run("command", "--list")
    assert code == EXIT_USAGE
    assert out == ""
    assert "not both" in err


def test_help_describes_the_command() -> None:
    code, out, _ = run("--help")
    assert code == 0
    assert "JSON Schema" in out
    assert "--list" in out
