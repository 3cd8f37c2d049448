"""The composition root: builds the engine, topics and publisher of one process, lazily.

The CLI, each worker process (after fork) and beat call :func:`build` with their settings; tests
call it with their own.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from sqlalchemy import Engine

# Importing these registers the control-signal handler and the integration consumers.
from metawsm.services import control, notify  # noqa: F401
from metawsm.services.processing import Runtime
from metawsm.settings import Settings
from metawsm.storage.engine import build_engine
from metawsm.topics import Topics
from metawsm.transport.publisher import CeleryPublisher, make_client_app


@dataclass
class Container:
    """Lazily built process-wide services; nothing connects until first use."""

    settings: Settings
    app: Any = field(default=None)

    @cached_property
    def engine(self) -> Engine:
        """The database engine (created on first use, in the process that uses it)."""
        return build_engine(self.settings)

    @cached_property
    def topics(self) -> Topics:
        """Topic names from the configured prefixes."""
        return Topics(self.settings)

    @cached_property
    def publisher(self) -> CeleryPublisher:
        """Publisher over the given Celery app, or a send-only client app."""
        app = self.app if self.app is not None else make_client_app(self.settings)
        return CeleryPublisher(app, self.settings.broker_url)

    @cached_property
    def runtime(self) -> Runtime:
        """Everything message processing needs."""
        return Runtime(
            engine=self.engine,
            settings=self.settings,
            topics=self.topics,
            publisher=self.publisher,
        )

    def close(self) -> None:
        """Dispose the engine and broker connections that were created."""
        if "engine" in self.__dict__:
            self.engine.dispose()
        if "publisher" in self.__dict__ and self.app is None:
            self.publisher.close()


def build(settings: Settings, app: Any = None) -> Container:
    """Build the container for one process."""
    return Container(settings=settings, app=app)
