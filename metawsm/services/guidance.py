"""Agents ask and wait: block until the guidance_answer to a request arrives, or the run stops."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Engine, select

from metawsm.errors import NotFound, RunStopped, WaitTimeout
from metawsm.storage.models import ForumEvent, Run
from metawsm.storage.uow import unit_of_work

STOPPED = ("stopping", "stopped", "failed", "closed", "closing")


@dataclass(frozen=True)
class Answer:
    """The answer to a guidance request."""

    answer: str
    answered_by: str
    thread_id: str
    event_id: str
    occurred_at: str

    def as_dict(self) -> dict[str, Any]:
        """Plain data for JSON output."""
        return {"answered": True, **self.__dict__}


def request_position(engine: Engine, command_id: str) -> tuple[str, str, int]:
    """(run_id, thread_id, thread_seq) of the request event written by ``command_id``."""
    with unit_of_work(engine, readonly=True) as session:
        row = session.execute(
            select(ForumEvent).where(
                ForumEvent.command_id == command_id,
                ForumEvent.event_type == "forum.control.signal",
            )
        ).scalar_one_or_none()
        if row is None or row.thread_id is None or row.run_id is None:
            raise NotFound(f"no control signal was written by command {command_id}")
        return row.run_id, row.thread_id, row.thread_seq or 0


def find_answer(engine: Engine, thread_id: str, after_seq: int) -> Answer | None:
    """The first guidance_answer on the thread after ``after_seq``, if any."""
    with unit_of_work(engine, readonly=True) as session:
        rows = session.execute(
            select(ForumEvent)
            .where(
                ForumEvent.thread_id == thread_id,
                ForumEvent.event_type == "forum.control.signal",
                ForumEvent.thread_seq > after_seq,
            )
            .order_by(ForumEvent.thread_seq)
        ).scalars()
        for row in rows:
            signal = row.payload.get("signal", {})
            if signal.get("control_type") == "guidance_answer":
                return Answer(
                    answer=str(signal.get("answer", "")),
                    answered_by=f"{row.actor_type}/{row.actor_name}",
                    thread_id=thread_id,
                    event_id=row.event_id,
                    occurred_at=row.occurred_at.isoformat(),
                )
    return None


def run_status(engine: Engine, run_id: str) -> str | None:
    """The run's current status."""
    with unit_of_work(engine, readonly=True) as session:
        return session.execute(select(Run.status).where(Run.run_id == run_id)).scalar()


def wait_for_answer(engine: Engine, command_id: str, timeout_s: float) -> Answer:
    """Block until the request written by ``command_id`` is answered.

    Raises:
        WaitTimeout: no answer within ``timeout_s``.
        RunStopped: the run stopped, failed or closed while waiting.
    """
    run_id, thread_id, seq = request_position(engine, command_id)
    deadline = time.monotonic() + timeout_s
    while True:
        answer = find_answer(engine, thread_id, seq)
        if answer is not None:
            return answer
        status = run_status(engine, run_id)
        if status in STOPPED:
            raise RunStopped(f"run {run_id} is {status}; no answer will come")
        if time.monotonic() >= deadline:
            raise WaitTimeout(f"no guidance answer on {thread_id} within {timeout_s:g} s")
        time.sleep(0.2)  # polling the event log for a condition, with a deadline
