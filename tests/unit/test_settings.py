"""Settings: defaults, validation naming the variable and rule, masking of secrets."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from metawsm.cli import cli
from metawsm.errors import ConfigError
from metawsm.settings import load_settings, mask_url


def test_defaults_are_the_embedded_ones(monkeypatch: pytest.MonkeyPatch, tmp_path: object) -> None:
    monkeypatch.chdir(str(tmp_path))
    for name in ("METAWSM_DATABASE_URL", "METAWSM_BROKER_URL", "METAWSM_SLA_MINUTES"):
        monkeypatch.delenv(name, raising=False)
    s = load_settings()
    assert s.database_url == f"sqlite:///{tmp_path}/.metawsm/metawsm.db"
    assert s.broker_url == "redis://127.0.0.1:6379/0"
    assert (s.command_prefix, s.event_prefix, s.integration_prefix) == (
        "forum.commands",
        "forum.events",
        "forum.integration",
    )
    assert s.sla_minutes == 30


@pytest.mark.parametrize(
    ("env", "value", "rule"),
    [
        ("METAWSM_SLA_MINUTES", "0", "greater than 0"),
        ("METAWSM_SLA_MINUTES", "soon", "valid integer"),
        ("METAWSM_BROKER_URL", "http://x", "redis:// or rediss://"),
        ("METAWSM_DATABASE_URL", "mysql://x/y", "sqlite:/// or postgresql://"),
        ("METAWSM_RETRY_MAX_ATTEMPTS", "0", "greater than or equal to 1"),
        ("METAWSM_COMMAND_PREFIX", "", "at least 1 character"),
        ("METAWSM_PUBLISH_TIMEOUT_S", "0", "greater than 0"),
        ("METAWSM_PUBLISH_BREAKER_S", "-1", "greater than or equal to 0"),
    ],
)
def test_an_invalid_value_names_the_variable_and_the_rule(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, rule: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert env in str(info.value)
    assert rule in str(info.value)
    assert info.value.exit_code == 2


def test_the_visibility_timeout_must_exceed_the_longest_hold(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("METAWSM_VISIBILITY_TIMEOUT_S", "100")
    with pytest.raises(ConfigError, match="METAWSM_VISIBILITY_TIMEOUT_S must exceed"):
        load_settings()


def test_passwords_in_urls_are_masked() -> None:
    assert mask_url("redis://:s3cret@h:6379/0") == "redis://:***@h:6379/0"
    assert mask_url("postgresql://u:pw@db/x") == "postgresql://u:***@db/x"
    assert mask_url("redis://h:6379/0") == "redis://h:6379/0"


def test_config_show_prints_masked_settings_and_invalid_ones_exit_2(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from metawsm.cli import main

    monkeypatch.setenv("METAWSM_BROKER_URL", "redis://:hunter2@127.0.0.1:6399/0")
    result = CliRunner().invoke(cli, ["config", "show", "--json"])
    assert result.exit_code == 0
    assert "hunter2" not in result.output and "***" in result.output
    monkeypatch.setenv("METAWSM_SLA_MINUTES", "-1")
    with pytest.raises(SystemExit) as info:
        main(["config", "show"])
    assert info.value.code == 2
