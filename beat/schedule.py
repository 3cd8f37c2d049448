"""The beat schedule: how often each housekeeping job runs (from the settings)."""

from __future__ import annotations

from typing import Any

from metawsm.settings import Settings
from metawsm.transport.queues import DRAIN_TASK, ESCALATE_TASK, HOUSEKEEPING_QUEUE, RECONCILE_TASK


def build_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Beat entries; each message expires after its interval so an idle worker is not flooded."""
    reconcile_every = max(1.0, settings.outbox_redrive_age_s / 2)
    return {
        "drain-outbox": _entry(DRAIN_TASK, settings.drain_interval_s),
        "reconcile-outbox": _entry(RECONCILE_TASK, reconcile_every),
        "escalate-sla": _entry(ESCALATE_TASK, settings.escalate_interval_s),
    }


def _entry(task: str, every_s: float) -> dict[str, Any]:
    return {
        "task": task,
        "schedule": every_s,
        "options": {"queue": HOUSEKEEPING_QUEUE, "expires": max(1.0, every_s * 2)},
    }
