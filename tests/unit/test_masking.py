"""Nothing secret printed: ``config show`` masks every credential of every setting (issue 14).

The walk sets each text setting in turn to a value that carries credentials the way that
setting could (a URL's password, a bare token as userinfo, a token in the query, a secret
``NAME=value``, a bearer token; ``user:password`` for a secret-named one) and checks that
``config show`` (text and ``--json``) prints none of them. A new text setting is walked too.
"""

from __future__ import annotations

import json
import typing

import pytest
from click.testing import CliRunner

from metawsm.cli import cli
from metawsm.masking import mask_text, mask_url, secret_name
from metawsm.records import field_names
from metawsm.settings import Settings

SECRETS = ("hunter2", "tok3n", "qu3ry", "s3cret", "b3arer")
# A value of each kind of text setting that carries every secret above and passes its rule.
CARRIERS = {
    "database_url": "postgresql://app:hunter2@db.example:5432/metawsm?password=qu3ry",
    "broker_url": "rediss://:hunter2@redis.example:6380/0?token=qu3ry",
    "metrics_basic_auth": "scraper:hunter2",
}
ANY_TEXT = (
    "curl -u x https://tok3n@hooks.example/x https://me:hunter2@h/y?token=qu3ry&a=1"
    " API_KEY=s3cret -H 'Authorization: Bearer b3arer'"
)


def text_settings() -> list[str]:
    """Every setting whose value is text (optional or not)."""
    hints = typing.get_type_hints(Settings)
    return [
        name
        for name in field_names(Settings)
        if str in (typing.get_args(hints[name]) or (hints[name],))
    ]


def test_the_walk_covers_every_text_setting() -> None:
    names = text_settings()
    assert {"database_url", "broker_url", "escalation_webhook_url"} <= set(names)
    assert {"escalation_notify_cmd", "metrics_basic_auth", "command_prefix"} <= set(names)


@pytest.mark.parametrize("name", text_settings())
@pytest.mark.parametrize("as_json", [False, True], ids=["text", "json"])
def test_config_show_prints_no_credential_of_any_setting(
    name: str, as_json: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    value = CARRIERS.get(name, ANY_TEXT)
    monkeypatch.setenv(f"METAWSM_{name.upper()}", value)
    result = CliRunner().invoke(cli, ["config", "show", *(["--json"] if as_json else [])])
    assert result.exit_code == 0, result.output
    shown = json.loads(result.output)[name] if as_json else result.output
    leaked = [secret for secret in SECRETS if secret in shown]
    assert leaked == [], f"METAWSM_{name.upper()}: {shown}"
    assert "***" in shown


def test_the_issue_example_is_masked_in_userinfo_and_query() -> None:
    url = "https://u:tok@hooks.example/x?token=abc"
    assert mask_url(url) == "https://u:***@hooks.example/x?token=***"


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:s3cret@h:6379/0", "redis://:***@h:6379/0"),
        ("postgresql://u:pw@db/x", "postgresql://u:***@db/x"),
        ("postgresql://postgres@127.0.0.1:5432/postgres", "postgresql://postgres@127.0.0.1:5432/postgres"),
        ("https://ghp_abc@hooks.example/x", "https://***@hooks.example/x"),
        ("https://h/x?sig=1&page=2&api_key=k", "https://h/x?sig=***&page=2&api_key=***"),
        ("redis://u:p@[::1]:6379/0", "redis://u:***@[::1]:6379/0"),
        ("redis://h:6379/0", "redis://h:6379/0"),
    ],
)  # fmt: skip
def test_a_url_keeps_what_locates_it_and_loses_what_opens_it(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_text_is_masked_where_it_holds_a_url_an_assignment_or_a_bearer_token() -> None:
    masked = mask_text(ANY_TEXT)
    assert not [secret for secret in SECRETS if secret in masked]
    assert masked.startswith("curl -u x https://***@hooks.example/x https://me:***@h/y")


@pytest.mark.parametrize("name", ["metrics_basic_auth", "api_key", "TOKEN", "client_secret"])
def test_names_like_a_secret_are_secret(name: str) -> None:
    assert secret_name(name)


@pytest.mark.parametrize("name", ["broker_url", "page", "sla_minutes", "monkey"])
def test_other_names_are_not(name: str) -> None:
    assert not secret_name(name)
