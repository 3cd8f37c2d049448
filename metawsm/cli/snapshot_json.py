"""The snapshot as one compact line of JSON (``status --json`` into a pipe or a file).

Byte for byte what ``compact(to_json(snap))`` writes (``tests/unit/test_snapshot_json.py``),
in less than half the time at 1,000 runs: each part is made a dict by a display of its fields,
unpacked, **with its keys in sorted order** (so orjson need not sort them: a quarter of its
time), and its times are left to orjson, which writes them as ``iso`` does (``Z`` for UTC,
microseconds only when not zero) without a Python call per time. A display unpacks a part once
and builds its dict in one step: half the cost of ``dict(zip(fields, part))``; a part's field
added or renamed without its display here fails that test.

On a database, ``status --json`` does not make the typed snapshot at all: its JSON is made
straight from the runs' stored documents and the clock (:func:`compact_document_from`), the same
bytes again (held to :func:`compact_document` of the typed snapshot over random documents, in the
same test module).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from metawsm.domain.sla import ESCALATING_STATES, URGENT
from metawsm.domain.snapshot import RunSnapshot, Snapshot
from metawsm.services import snapshot_parts as parts
from metawsm.services.snapshot_parts import (
    DOC_AGENTS,
    DOC_BLOCKERS,
    DOC_BRIEF,
    DOC_COUNTS,
    DOC_LAST_AT,
    DOC_LAST_SEQUENCE,
    DOC_THREADS,
    Clock,
)
from metawsm.services.snapshot_reads import RunRow


def _run(run: RunSnapshot) -> dict[str, Any]:
    (run_id, status, mode, tickets, epoch, updated_at, brief, agents, asked, threads,
     candidates, raised, counts, unanswered, blockers, last_seq, last_at, at) = run  # fmt: skip
    return {
        "agents": [
            {
                "agent_name": name,
                "completed": completed,
                "control_thread_id": thread,
                "last_signal_at": at,
                "pending_guidance": pending,
                "status": st,
                "validation_status": validation,
            }
            for name, st, at, pending, completed, validation, thread in agents
        ],
        "blockers": [
            {"fix": fix, "kind": kind, "message_id": message_id, "reason": reason}
            for kind, reason, fix, message_id in blockers
        ],
        "brief": None if brief is None else {"done_criteria": brief[1], "goal": brief[0]},
        "control_epoch": epoch,
        "escalation_candidates": _escalations(candidates) if candidates else [],
        "escalations": _escalations(raised) if raised else [],
        "generated_at": at,
        "last_event_at": last_at,
        "last_event_sequence": last_seq,
        "mode": mode,
        "open_threads": [
            {
                "age_s": age,
                "assignee_name": assignee,
                "is_unanswered": unanswered_,
                "priority": prio,
                "state": state,
                "thread_id": tid,
                "title": title,
                "updated_at": at,
            }
            for tid, title, state, prio, assignee, at, age, unanswered_ in threads
        ]
        if threads
        else [],
        "pending_guidance": _pending(asked) if asked else [],
        "queue_counts": counts if _in_order(counts) else dict(sorted(counts.items())),
        "run_id": run_id,
        "status": status,
        "tickets": list(tickets),
        "unanswered_count": unanswered,
        "updated_at": updated_at,
    }


def _in_order(counts: dict[str, int]) -> bool:
    # A run's counts come with their states in order (services/snapshot_parts.py doc_of): then
    # the dict is written as it is (a new sorted one per run costs more than this check).
    previous = ""
    for state in counts:
        if state < previous:
            return False
        previous = state
    return True


def _pending(items: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "age_s": age,
            "agent_name": agent,
            "asked_at": at,
            "context": context,
            "question": question,
            "request_event_id": event_id,
            "thread_id": tid,
        }
        for tid, agent, question, context, at, age, event_id in items
    ]


def _escalations(items: list[Any]) -> list[dict[str, Any]]:
    return [
        {
            "age_s": age,
            "agent_name": agent,
            "raised": raised,
            "reason": reason,
            "since": since,
            "subject": subject,
            "thread_id": tid,
            "tier": tier,
        }
        for tid, tier, reason, subject, since, age, raised, agent in items
    ]


def compact_document_from(runs: Sequence[tuple[RunRow, list[Any]]], clock: Clock) -> dict[str, Any]:
    """What :func:`compact_document` makes of the snapshot of ``runs`` (each with its document:
    services/snapshot.py ``read_documents``) at ``clock``'s time, made straight from the
    documents: no typed part is made (~30 % fewer instructions at 1,000 runs; ``status --json``
    into a pipe, what agents poll). Byte for byte the same once encoded
    (``tests/unit/test_snapshot_json.py``, over random documents): the parts that depend on the
    clock are made as services/snapshot_parts.py ``run_snapshot`` makes them, and a stored time
    is written as it is stored, but for its UTC offset ``+00:00`` written ``Z`` (as orjson's
    UTC_Z option writes the time it stands for; any other offset is parsed and left to it)."""
    return {"generated_at": clock.now, "runs": [_run_from(run, doc, clock) for run, doc in runs]}


def _stored_time(text: str) -> str | datetime:
    # What orjson (OPT_UTC_Z) writes of the time ``text`` stands for: the documents' times were
    # written by orjson from UTC times (``+00:00``), micro-seconds only when not zero.
    return text[:-6] + "Z" if text.endswith("+00:00") else datetime.fromisoformat(text)


def _run_from(run: RunRow, doc: list[Any], clock: Clock) -> dict[str, Any]:
    # services/snapshot_parts.py run_snapshot, written as _run writes its result.
    now, cutoff, fromiso = clock.now, clock.cutoff, datetime.fromisoformat
    threads, due, unanswered_count = [], [], 0
    for tid, title, state, prio, assignee, at_text, unanswered, agent in doc[DOC_THREADS]:
        at = fromiso(at_text)
        d = now - at
        days = d.days
        threads.append(
            {
                "age_s": days * 86400 + d.seconds if days >= 0 else 0,
                "assignee_name": assignee,
                "is_unanswered": unanswered,
                "priority": prio,
                "state": state,
                "thread_id": tid,
                "title": title,
                "updated_at": _stored_time(at_text),
            }
        )
        unanswered_count += unanswered
        if state in ESCALATING_STATES and (at <= cutoff or prio in URGENT):
            due.append((tid, title, state, prio, at, agent))  # past a tier, maybe raised
    asked, raised = parts.asked_and_raised(doc, clock)
    candidates = parts.candidates(run, due, raised, asked, clock) if due or asked else []
    brief, last_at, counts = doc[DOC_BRIEF], doc[DOC_LAST_AT], doc[DOC_COUNTS]
    return {
        "agents": [
            {
                "agent_name": name,
                "completed": completed,
                "control_thread_id": thread,
                "last_signal_at": at and _stored_time(at),
                "pending_guidance": pending,
                "status": st,
                "validation_status": validation,
            }
            for name, st, at, pending, completed, validation, thread in doc[DOC_AGENTS]
        ],
        "blockers": [
            {"fix": fix, "kind": kind, "message_id": message_id, "reason": reason}
            for kind, reason, fix, message_id in doc[DOC_BLOCKERS]
        ],
        "brief": None if brief is None else {"done_criteria": brief[1], "goal": brief[0]},
        "control_epoch": run.control_epoch,
        "escalation_candidates": _escalations(candidates) if candidates else [],
        "escalations": _escalations(raised) if raised else [],
        "generated_at": now,
        "last_event_at": last_at and _stored_time(last_at),
        "last_event_sequence": doc[DOC_LAST_SEQUENCE],
        "mode": run.mode,
        "open_threads": threads,
        "pending_guidance": _pending(parts.pending_guidance(asked, now)) if asked else [],
        "queue_counts": counts if _in_order(counts) else dict(sorted(counts.items())),
        "run_id": run.run_id,
        "status": run.status,
        "tickets": run.tickets,
        "unanswered_count": unanswered_count,
        "updated_at": run.updated_at,
    }


def compact_snapshot(snap: Snapshot) -> bytes:
    """``snap`` as ``compact(to_json(snap))`` writes it, UTF-8 encoded."""
    return encode_compact(compact_document(snap))


def compact_document(snap: Snapshot) -> dict[str, Any]:
    """The data :func:`compact_snapshot` writes (dicts and lists, times as datetimes)."""
    return {"generated_at": snap.generated_at, "runs": [_run(r) for r in snap.runs]}


def encode_compact(document: dict[str, Any]) -> bytes:
    """:func:`compact_document`'s data as compact JSON (times as ``iso`` writes them)."""
    import orjson  # only here: a command's start imports what it uses

    return orjson.dumps(document, option=orjson.OPT_UTC_Z)
