"""One typed settings object, built at the edge of each process and passed inward.

Every field reads from the environment with the ``METAWSM_`` prefix (names are case-insensitive)
or, below it, from a ``.env`` file in the current directory. Nothing here connects to anything.

The object is a frozen record (metawsm/records.py: a frozen dataclass's behaviour without its
compile cost at import), each field parsed and checked by an explicit rule
(:mod:`metawsm.settings_rules`) with the messages pydantic gave before: pydantic-settings cost
every command ~110 ms of imports (docs/performance.md, "Command-line start-up").
"""

from __future__ import annotations

import os
from dataclasses import field
from typing import Any

from metawsm import url_parts
from metawsm.database_location import database_origin, nearest_database
from metawsm.errors import ConfigError
from metawsm.masking import mask_setting, mask_url
from metawsm.records import field_names, frozen_record, replace
from metawsm.settings_rules import Rule, Spec, check_fields

__all__ = ["Settings", "database_url_origin", "env_default", "load_settings", "mask_url"]

ENV_PREFIX = "METAWSM_"
ENV_FILE = ".env"
# Margin kept between a task's worst-case hold time and the broker's visibility timeout, so a
# message is never redelivered while its first delivery is still running (facts sheet §2).
VISIBILITY_MARGIN_S = 60


def default_database_url() -> str:
    """SQLite: the nearest ``.metawsm/metawsm.db`` from the current directory up, else the one
    of the current directory (metawsm.database_location): the said-out-loud default."""
    return f"sqlite:///{nearest_database()[0]}"


def _database_scheme(value: str) -> str | None:
    scheme = url_parts.scheme(value)
    if not (scheme.startswith("sqlite") or scheme.startswith("postgresql")):
        return "must be a sqlite:/// or postgresql:// URL"
    return None


def _broker_scheme(value: str) -> str | None:
    try:
        host = url_parts.hostname(value)
    except ValueError:  # unbalanced brackets of an IPv6 host
        host = None
    if url_parts.scheme(value) not in ("redis", "rediss") or not host:
        return "must be a redis:// or rediss:// URL with a host"
    return None


def _user_password(value: str) -> str | None:
    user, sep, password = value.partition(":")
    if not (user and sep and password):
        return "must be user:password (both non-empty)"
    return None


# The rule of every field, in the order of the fields (errors are reported in this order).
SPECS: dict[str, Spec] = {
    "database_url": Spec(str, Rule(check=_database_scheme)),
    "broker_url": Spec(str, Rule(check=_broker_scheme)),
    "command_prefix": Spec(str, Rule(min_length=1)),
    "event_prefix": Spec(str, Rule(min_length=1)),
    "integration_prefix": Spec(str, Rule(min_length=1)),
    "sla_minutes": Spec(int, Rule(gt=0)),
    "sla_human_minutes": Spec(int, Rule(gt=0)),
    "retry_max_attempts": Spec(int, Rule(ge=1, le=100)),
    "retry_backoff_base_s": Spec(float, Rule(gt=0)),
    "retry_backoff_cap_s": Spec(float, Rule(gt=0)),
    "outbox_lease_s": Spec(float, Rule(gt=0)),
    "outbox_redrive_age_s": Spec(float, Rule(gt=0)),
    "outbox_batch": Spec(int, Rule(ge=1, le=10_000)),
    "drain_interval_s": Spec(float, Rule(gt=0)),
    "visibility_timeout_s": Spec(int, Rule(gt=0)),
    "task_time_limit_s": Spec(int, Rule(gt=0)),
    "task_events": Spec(bool, Rule()),
    "publish_timeout_s": Spec(float, Rule(gt=0, le=30)),
    "publish_breaker_s": Spec(float, Rule(ge=0, le=300)),
    "wait_timeout_s": Spec(float, Rule(gt=0)),
    "db_busy_timeout_ms": Spec(int, Rule(ge=0)),
    "escalate_interval_s": Spec(float, Rule(gt=0)),
    "escalation_notify_cmd": Spec(str, Rule(), optional=True),
    "escalation_webhook_url": Spec(str, Rule(), optional=True),
    "operator_stale_run_s": Spec(int, Rule(gt=0)),
    "heartbeat_interval_s": Spec(float, Rule(gt=0, le=60)),
    "health_broker_timeout_s": Spec(float, Rule(gt=0, le=10)),
    "health_outbox_max_age_s": Spec(float, Rule(gt=0)),
    "health_projection_max_lag_s": Spec(float, Rule(gt=0)),
    "health_dead_letters_max": Spec(int, Rule(ge=0)),
    "metrics_basic_auth": Spec(str, Rule(check=_user_password), optional=True),
}


@frozen_record
class Settings:
    """Effective configuration of one metawsm process (env prefix ``METAWSM_``).

    Built by :func:`load_settings` (environment, ``.env``, overrides); constructing it directly
    checks the same rules. Raises :class:`ConfigError` naming the variable and the rule.
    """

    database_url: str = field(default_factory=default_database_url)
    broker_url: str = "redis://127.0.0.1:6379/0"
    command_prefix: str = "forum.commands"
    event_prefix: str = "forum.events"
    integration_prefix: str = "forum.integration"
    sla_minutes: int = 30
    sla_human_minutes: int = 60
    retry_max_attempts: int = 5
    retry_backoff_base_s: float = 0.5
    retry_backoff_cap_s: float = 30.0
    outbox_lease_s: float = 30.0
    outbox_redrive_age_s: float = 60.0
    outbox_batch: int = 200
    drain_interval_s: float = 5.0
    visibility_timeout_s: int = 3600
    task_time_limit_s: int = 120
    task_events: bool = True
    # A publish gives up after this long (connect, then each read) and leaves the message to the
    # drainer; after a failure the process skips publishing for publish_breaker_s (0: never).
    publish_timeout_s: float = 0.5
    publish_breaker_s: float = 5.0
    wait_timeout_s: float = 30.0
    db_busy_timeout_ms: int = 5000
    escalate_interval_s: float = 30.0
    escalation_notify_cmd: str | None = None
    escalation_webhook_url: str | None = None
    operator_stale_run_s: int = 3600
    # Operations (metawsm.ops): heartbeats, health thresholds, the metrics server's basic auth.
    heartbeat_interval_s: float = 2.0
    health_broker_timeout_s: float = 1.0
    health_outbox_max_age_s: float = 60.0
    health_projection_max_lag_s: float = 30.0
    health_dead_letters_max: int = 0
    # user:password; a secret: never in repr, masked by masked().
    metrics_basic_auth: str | None = field(default=None, repr=False)

    @property
    def liveness_s(self) -> float:
        """A heartbeat older than this means its process is gone (3 heartbeat intervals)."""
        return 3 * self.heartbeat_interval_s

    def __post_init__(self) -> None:
        values, errors = check_fields(SPECS, self.as_dict())
        for name, value in values.items():  # coerced (e.g. "5" -> 5), as pydantic did
            object.__setattr__(self, name, value)
        if errors:
            raise ConfigError(_describe(errors))
        rule = _cross_field_rule(self)
        if rule:
            raise ConfigError(f"invalid setting settings: Value error, {rule}")

    def as_dict(self) -> dict[str, Any]:
        """Every field and its value, in field order (plain data)."""
        return {name: getattr(self, name) for name in field_names(self)}

    def replace(self, **changes: Any) -> Settings:
        """A copy with ``changes`` applied and checked by the same rules.

        Raises:
            ConfigError: a changed value breaks its rule.
            TypeError: a name is not a setting.
        """
        return replace(self, **changes)

    def masked(self) -> dict[str, Any]:
        """The settings as plain data with every credential replaced by ``***``: in each URL
        (userinfo, credential-like query parameters), in any text, and the whole value of a
        setting named like a secret (metawsm.masking)."""
        return {name: mask_setting(name, value) for name, value in self.as_dict().items()}


def _cross_field_rule(s: Settings) -> str | None:
    worst_hold = s.task_time_limit_s + s.retry_backoff_cap_s + VISIBILITY_MARGIN_S
    if s.visibility_timeout_s <= worst_hold:
        return (
            f"METAWSM_VISIBILITY_TIMEOUT_S must exceed task_time_limit_s + retry_backoff_cap_s"
            f" + {VISIBILITY_MARGIN_S} s margin (= {worst_hold:g} s)"
        )
    if s.retry_backoff_cap_s < s.retry_backoff_base_s:
        return "METAWSM_RETRY_BACKOFF_CAP_S must be >= METAWSM_RETRY_BACKOFF_BASE_S"
    return None


def _describe(errors: list[tuple[str, str]]) -> str:
    return "; ".join(f"invalid setting {ENV_PREFIX}{name.upper()}: {msg}" for name, msg in errors)


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from ``overrides``, else the environment, else ``.env``, else defaults.

    Raises:
        ConfigError: naming the ``METAWSM_`` variable and the rule it broke.
        TypeError: an override names no setting.
    """
    unknown = set(overrides) - set(SPECS)
    if unknown:
        raise TypeError(f"unknown settings: {', '.join(sorted(unknown))}")
    found = {**_prefixed(_dotenv_values()), **_prefixed(dict(os.environ))}
    return Settings(**{**found, **overrides})


def _prefixed(source: dict[str, str | None]) -> dict[str, str]:
    """The values of ``source`` that name a setting (``METAWSM_<NAME>``, any case)."""
    out = {}
    for key, value in source.items():
        name = key.lower().removeprefix(ENV_PREFIX.lower())
        if value is not None and len(name) < len(key) and name in SPECS:
            out[name] = value
    return out


def _dotenv_values() -> dict[str, str | None]:
    """The ``.env`` file of the current directory, parsed as python-dotenv does (if any)."""
    if not os.path.isfile(ENV_FILE):
        return {}
    from dotenv import dotenv_values  # only when there is a file: its imports cost ~10 ms

    return dict(dotenv_values(ENV_FILE))


def database_url_origin() -> str:
    """Where the database URL in force comes from, in words (for ``config show``)."""
    in_environment = "database_url" in _prefixed(dict(os.environ))
    in_dotenv = not in_environment and "database_url" in _prefixed(_dotenv_values())
    return database_origin(in_environment, in_dotenv)


def env_default(name: str) -> str | None:
    """A CLI default from ``METAWSM_<name>`` (run id, ticket, agent name, actor name), if set."""
    value = os.environ.get(f"{ENV_PREFIX}{name}", "").strip()
    return value or None
