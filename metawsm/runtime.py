"""What every service needs, built once per process by the composition root (``bootstrap``)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import Engine

from metawsm.settings import Settings
from metawsm.storage.types import utcnow

if TYPE_CHECKING:  # topics load the command and event models, which a CLI read does not need
    from metawsm.topics import Topics


class Publisher(Protocol):
    """Sends one message to the broker; raises a metawsm error when it cannot."""

    def publish(
        self, topic: str, message_id: str, payload: dict[str, Any], redelivery: bool = False
    ) -> None:
        """Publish ``payload`` on ``topic`` (queue and task name) with id ``message_id``.

        ``redelivery``: the message was handed to the broker before (re-driven by
        reconciliation, or redriven from the dead-letter table): its consumer counts the
        delivery before working on it.
        """


@dataclass(frozen=True)
class Runtime:
    """The engine, settings, topics, publisher and clock of one process.

    Services take it whole; no service builds its own engine, topics or publisher. ``clock``
    returns the current UTC time (tests may pass their own).
    """

    engine: Engine
    settings: Settings
    topics: Topics
    publisher: Publisher
    clock: Callable[[], datetime] = field(default=utcnow)
