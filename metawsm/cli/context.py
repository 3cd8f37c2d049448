"""The CLI's context object: settings and the composition root, built lazily on first use."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import click

from metawsm.errors import MetawsmError
from metawsm.settings import Settings, load_settings


@dataclass
class AppContext:
    """Per-invocation state shared by CLI commands (settings are read once, at the edge)."""

    _settings: Settings | None = field(default=None)

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
        return self._settings


def emit_json(data: Any) -> None:
    """Write ``data`` as JSON on stdout (data on stdout, diagnostics on stderr)."""
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def render_error(exc: MetawsmError) -> None:
    """Print a metawsm error on stderr, prefixed by its kind."""
    click.echo(f"error: {exc}", err=True)


pass_app = click.make_pass_decorator(AppContext, ensure=True)
