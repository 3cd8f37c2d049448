"""Housekeeping tasks driven by beat; each is safe to run twice at once (claims, constraints)."""

from __future__ import annotations

import logging

from celery import Celery

from metawsm.bootstrap import Container
from metawsm.services import escalation, outbox
from metawsm.transport.queues import DRAIN_TASK, ESCALATE_TASK, HOUSEKEEPING_QUEUE, RECONCILE_TASK

log = logging.getLogger(__name__)

# send_events=False: no task events (Flower's task list is the forum's work); Celery's per-task
# lines go to DEBUG (metawsm/transport/quiet_housekeeping.py): each job logs one INFO line when
# it did something.


def register(app: Celery, container: Container) -> None:
    """Register the housekeeping tasks on ``app``."""

    @app.task(
        name=DRAIN_TASK, queue=HOUSEKEEPING_QUEUE, acks_late=True, shared=False, send_events=False
    )
    def drain_outbox() -> dict[str, int]:
        """Publish every due outbox row: new rows nobody published, and failed ones."""
        rt = container.runtime
        report = outbox.drain(rt.engine, rt.publisher, rt.settings)
        if report.claimed:
            log.info("outbox drain: %d published, %d failed", report.sent, report.failed)
        return {"claimed": report.claimed, "sent": report.sent, "failed": report.failed}

    @app.task(
        name=RECONCILE_TASK,
        queue=HOUSEKEEPING_QUEUE,
        acks_late=True,
        shared=False,
        send_events=False,
    )
    def reconcile_outbox() -> dict[str, int]:
        """Re-drive messages published long ago whose effect never landed, then drain."""
        rt = container.runtime
        redriven = outbox.reconcile(rt.engine, rt.settings)
        report = outbox.drain(rt.engine, rt.publisher, rt.settings)
        if redriven or report.claimed:
            log.info(
                "outbox reconciliation: %d re-driven, %d published, %d failed",
                redriven, report.sent, report.failed,
            )  # fmt: skip
        return {"redriven": redriven, "sent": report.sent, "failed": report.failed}

    @app.task(
        name=ESCALATE_TASK,
        queue=HOUSEKEEPING_QUEUE,
        acks_late=True,
        shared=False,
        send_events=False,
    )
    def escalate() -> dict[str, int]:
        """Raise every SLA escalation that is due, once per (thread, tier, subject)."""
        raised = escalation.raise_due(container.runtime)
        if raised:
            log.info("SLA pass: %d escalations raised", raised)
        return {"raised": raised}
