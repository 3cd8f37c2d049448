"""One typed settings object, built at the edge of each process and passed inward.

Every field reads from the environment with the ``METAWSM_`` prefix (or a ``.env`` file in the
current directory). Nothing here connects to anything.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from metawsm.errors import ConfigError

ENV_PREFIX = "METAWSM_"
# Margin kept between a task's worst-case hold time and the broker's visibility timeout, so a
# message is never redelivered while its first delivery is still running (facts sheet §2).
VISIBILITY_MARGIN_S = 60


def default_database_url() -> str:
    """SQLite under ``.metawsm/`` of the current directory: the embedded, said-out-loud default."""
    return f"sqlite:///{Path.cwd() / '.metawsm' / 'metawsm.db'}"


class Settings(BaseSettings):
    """Effective configuration of one metawsm process (env prefix ``METAWSM_``)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, env_file=".env", extra="ignore", frozen=True
    )

    database_url: str = Field(default_factory=default_database_url)
    broker_url: str = "redis://127.0.0.1:6379/0"
    command_prefix: str = Field(default="forum.commands", min_length=1)
    event_prefix: str = Field(default="forum.events", min_length=1)
    integration_prefix: str = Field(default="forum.integration", min_length=1)
    sla_minutes: int = Field(default=30, gt=0)
    sla_human_minutes: int = Field(default=60, gt=0)
    retry_max_attempts: int = Field(default=5, ge=1, le=100)
    retry_backoff_base_s: float = Field(default=0.5, gt=0)
    retry_backoff_cap_s: float = Field(default=30.0, gt=0)
    outbox_lease_s: float = Field(default=30.0, gt=0)
    outbox_redrive_age_s: float = Field(default=60.0, gt=0)
    outbox_batch: int = Field(default=200, ge=1, le=10_000)
    drain_interval_s: float = Field(default=5.0, gt=0)
    visibility_timeout_s: int = Field(default=3600, gt=0)
    task_time_limit_s: int = Field(default=120, gt=0)
    task_events: bool = True
    # A publish gives up after this long (connect, then each read) and leaves the message to the
    # drainer; after a failure the process skips publishing for publish_breaker_s (0: never).
    publish_timeout_s: float = Field(default=0.5, gt=0, le=30)
    publish_breaker_s: float = Field(default=5.0, ge=0, le=300)
    wait_timeout_s: float = Field(default=30.0, gt=0)
    db_busy_timeout_ms: int = Field(default=5000, ge=0)
    escalate_interval_s: float = Field(default=30.0, gt=0)
    escalation_notify_cmd: str | None = None
    escalation_webhook_url: str | None = None
    operator_stale_run_s: int = Field(default=3600, gt=0)
    # Operations (metawsm.ops): heartbeats, health thresholds, the metrics server's basic auth.
    heartbeat_interval_s: float = Field(default=2.0, gt=0, le=60)
    health_broker_timeout_s: float = Field(default=1.0, gt=0, le=10)
    health_outbox_max_age_s: float = Field(default=60.0, gt=0)
    health_projection_max_lag_s: float = Field(default=30.0, gt=0)
    health_dead_letters_max: int = Field(default=0, ge=0)
    metrics_basic_auth: SecretStr | None = None

    @property
    def liveness_s(self) -> float:
        """A heartbeat older than this means its process is gone (3 heartbeat intervals)."""
        return 3 * self.heartbeat_interval_s

    @field_validator("database_url")
    @classmethod
    def _database_scheme(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if not (scheme.startswith("sqlite") or scheme.startswith("postgresql")):
            raise ValueError("must be a sqlite:/// or postgresql:// URL")
        return value

    @field_validator("broker_url")
    @classmethod
    def _broker_scheme(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("redis", "rediss") or not parts.hostname:
            raise ValueError("must be a redis:// or rediss:// URL with a host")
        return value

    @field_validator("metrics_basic_auth")
    @classmethod
    def _user_password(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            user, sep, password = value.get_secret_value().partition(":")
            if not (user and sep and password):
                raise ValueError("must be user:password (both non-empty)")
        return value

    @model_validator(mode="after")
    def _visibility_rule(self) -> Settings:
        worst_hold = self.task_time_limit_s + self.retry_backoff_cap_s + VISIBILITY_MARGIN_S
        if self.visibility_timeout_s <= worst_hold:
            raise ValueError(
                f"METAWSM_VISIBILITY_TIMEOUT_S must exceed task_time_limit_s + retry_backoff_cap_s"
                f" + {VISIBILITY_MARGIN_S} s margin (= {worst_hold:g} s)"
            )
        if self.retry_backoff_cap_s < self.retry_backoff_base_s:
            raise ValueError("METAWSM_RETRY_BACKOFF_CAP_S must be >= METAWSM_RETRY_BACKOFF_BASE_S")
        return self

    def masked(self) -> dict[str, Any]:
        """The settings as plain data with every password in a URL replaced by ``***``."""
        data = self.model_dump()
        for key in ("database_url", "broker_url"):
            data[key] = mask_url(str(data[key]))
        return data


def mask_url(url: str) -> str:
    """Return ``url`` with its password (if any) replaced by ``***``; safe to log."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


def load_settings(**overrides: Any) -> Settings:
    """Build the settings from the environment (plus ``overrides``).

    Raises:
        ConfigError: naming the ``METAWSM_`` variable and the rule it broke.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        name = f"{ENV_PREFIX}{loc.upper()}" if loc else "settings"
        lines.append(f"invalid setting {name}: {err['msg']}")
    return "; ".join(lines)


def env_default(name: str) -> str | None:
    """A CLI default from ``METAWSM_<name>`` (run id, ticket, agent name, actor name), if set."""
    value = os.environ.get(f"{ENV_PREFIX}{name}", "").strip()
    return value or None
