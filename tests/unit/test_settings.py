"""Settings: defaults, validation naming the variable and rule, masking of secrets."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from metawsm.cli import cli
from metawsm.errors import ConfigError
from metawsm.settings import Settings, load_settings, mask_url


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


@pytest.mark.parametrize(
    ("env", "value", "expected"),
    [
        ("METAWSM_SLA_MINUTES", " 5 ", 5),
        ("METAWSM_SLA_MINUTES", "5.0", 5),
        ("METAWSM_SLA_MINUTES", "1_000", 1000),
        ("METAWSM_RETRY_BACKOFF_BASE_S", "1e-1", 0.1),
        ("METAWSM_TASK_EVENTS", "False", False),
        ("METAWSM_TASK_EVENTS", "off", False),
        ("METAWSM_TASK_EVENTS", "YES", True),
        ("METAWSM_ESCALATION_NOTIFY_CMD", "", ""),
        ("metawsm_sla_minutes", "7", 7),
    ],
)
def test_values_are_parsed_as_before_from_text(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, expected: object
) -> None:
    monkeypatch.setenv(env, value)
    name = env.lower().removeprefix("metawsm_")
    assert getattr(load_settings(), name) == expected


@pytest.mark.parametrize(
    ("env", "value", "message"),
    [
        ("METAWSM_SLA_MINUTES", "5.5", "Input should be a valid integer, unable to parse string"),
        ("METAWSM_DRAIN_INTERVAL_S", "x", "Input should be a valid number, unable to parse string"),
        ("METAWSM_TASK_EVENTS", "2", "Input should be a valid boolean, unable to interpret input"),
        ("METAWSM_OUTBOX_BATCH", "10001", "Input should be less than or equal to 10000"),
        ("METAWSM_BROKER_URL", "redis://", "Value error, must be a redis:// or rediss:// URL"),
    ],
)
def test_an_unparsable_value_gets_the_message_it_always_had(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, message: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value).startswith(f"invalid setting {env}: {message}")


def test_every_invalid_variable_is_named_in_field_order(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("METAWSM_SLA_MINUTES", "0")
    monkeypatch.setenv("METAWSM_BROKER_URL", "x")
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value) == (
        "invalid setting METAWSM_BROKER_URL: Value error, must be a redis:// or rediss:// URL"
        " with a host; invalid setting METAWSM_SLA_MINUTES: Input should be greater than 0"
    )


def test_a_dotenv_file_is_read_below_the_environment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    monkeypatch.chdir(str(tmp_path))
    for name in ("METAWSM_SLA_MINUTES", "METAWSM_OUTBOX_BATCH", "METAWSM_SLA_HUMAN_MINUTES"):
        monkeypatch.delenv(name, raising=False)
    with open(".env", "w") as env_file:
        env_file.write(
            "METAWSM_SLA_MINUTES=11\nexport METAWSM_OUTBOX_BATCH=13 # a comment\n"
            "metawsm_sla_human_minutes='12'\nOTHER=ignored\n"
        )
    s = load_settings()
    assert (s.sla_minutes, s.outbox_batch, s.sla_human_minutes) == (11, 13, 12)
    monkeypatch.setenv("METAWSM_SLA_MINUTES", "21")
    assert load_settings().sla_minutes == 21
    monkeypatch.setenv("METAWSM_OUTBOX_BATCH", "0")
    with pytest.raises(ConfigError, match="METAWSM_OUTBOX_BATCH: Input should be greater"):
        load_settings()


def test_overrides_win_and_are_checked_like_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("METAWSM_SLA_MINUTES", "9")
    assert load_settings(sla_minutes=4).sla_minutes == 4
    assert load_settings(escalate_interval_s=7).escalate_interval_s == 7.0
    with pytest.raises(ConfigError, match="METAWSM_SLA_MINUTES: Input should be a valid integer"):
        load_settings(sla_minutes=3.5)
    with pytest.raises(TypeError, match="unknown settings: bogus"):
        load_settings(bogus=1)


def test_the_settings_are_frozen_and_replace_checks_the_rules() -> None:
    s = Settings()
    with pytest.raises(AttributeError):
        s.sla_minutes = 3  # type: ignore[misc]
    quick = s.replace(wait_timeout_s=0.3)
    assert (quick.wait_timeout_s, s.wait_timeout_s) == (0.3, 30.0)
    assert quick.as_dict() == {**s.as_dict(), "wait_timeout_s": 0.3}
    assert list(s.as_dict())[:2] == ["database_url", "broker_url"]
    with pytest.raises(ConfigError, match="METAWSM_RETRY_BACKOFF_CAP_S must be >="):
        s.replace(retry_backoff_base_s=40.0, visibility_timeout_s=4000)
    with pytest.raises(ConfigError, match="METAWSM_WAIT_TIMEOUT_S: Input should be greater"):
        Settings(wait_timeout_s=0)
