"""Escalation notifications: an integration consumer that runs a command or posts a webhook.

Idempotent by (consumer, event_id): a redelivered escalation does not notify twice.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request

from metawsm.errors import Transient
from metawsm.messages.events import Event
from metawsm.runtime import Runtime
from metawsm.services.outbox import mark_done
from metawsm.storage.models import ForumProjectionEvent
from metawsm.storage.types import utcnow
from metawsm.storage.uow import unit_of_work

LEDGER = "escalation_notify_v1"


def event_env(event: Event) -> dict[str, str]:
    """Environment variables describing an escalation, for a notify command."""
    p = event.payload
    return {
        "METAWSM_EVENT": "sla_escalation",
        "METAWSM_EVENT_ID": event.event_id,
        "METAWSM_THREAD_ID": event.thread_id or "",
        "METAWSM_RUN_ID": event.run_id or "",
        "METAWSM_TICKET": event.ticket or "",
        "METAWSM_TIER": str(p.get("tier", "")),
        "METAWSM_MESSAGE": str(p.get("reason", "")),
    }


def notify(rt: Runtime, event: Event) -> None:
    """Run the notify command and/or post the webhook configured in the settings.

    Raises:
        Transient: the command failed or the webhook did not answer 2xx (retried).
    """
    settings = rt.settings
    if settings.escalation_notify_cmd:
        done = subprocess.run(
            settings.escalation_notify_cmd,
            shell=True,
            env={**os.environ, **event_env(event)},
            timeout=30,
            check=False,
            capture_output=True,
        )
        if done.returncode != 0:
            raise Transient(f"notify command exited {done.returncode}")
    if settings.escalation_webhook_url:
        body = json.dumps(event.model_dump(mode="json")).encode()
        request = urllib.request.Request(
            settings.escalation_webhook_url,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                if response.status >= 300:
                    raise Transient(f"webhook answered {response.status}")
        except OSError as exc:
            raise Transient(f"webhook failed: {exc}") from exc


def consume_escalation(
    rt: Runtime, event: Event, message_id: str, *, count_delivery: bool = False
) -> bool:
    """Notify once per escalation event (its deliveries are counted before it runs)."""
    key = {"projection": LEDGER, "event_id": event.event_id}
    with unit_of_work(rt.engine, readonly=True) as session:
        done = session.get(ForumProjectionEvent, key) is not None
    if not done:
        notify(rt, event)
    with unit_of_work(rt.engine) as session:
        mark_done(session, [message_id], utcnow(), count_delivery=count_delivery)
        if session.get(ForumProjectionEvent, key) is None:
            session.add(ForumProjectionEvent(applied_at=utcnow(), **key))
    return not done
