"""Forum rules: states, the transition table, what a closed thread still accepts."""

from __future__ import annotations

from metawsm.errors import Rejected
from metawsm.messages.rules import ThreadState

S = ThreadState
# Allowed change_state moves (spec §2.1). Same-state moves are no-ops handled by the caller;
# `closed` is final for every command except an idempotent close (the reference's quirk that
# let change_state rewrite a closed thread is not kept).
TRANSITIONS: dict[ThreadState, frozenset[ThreadState]] = {
    S.NEW: frozenset({S.TRIAGED, S.WAITING_OPERATOR, S.WAITING_HUMAN, S.ANSWERED, S.CLOSED}),
    S.TRIAGED: frozenset({S.WAITING_OPERATOR, S.WAITING_HUMAN, S.ANSWERED, S.CLOSED}),
    S.WAITING_OPERATOR: frozenset({S.TRIAGED, S.WAITING_HUMAN, S.ANSWERED, S.CLOSED}),
    S.WAITING_HUMAN: frozenset({S.TRIAGED, S.WAITING_OPERATOR, S.ANSWERED, S.CLOSED}),
    S.ANSWERED: frozenset({S.WAITING_OPERATOR, S.WAITING_HUMAN, S.CLOSED}),
    S.CLOSED: frozenset(),
}


def check_transition(thread_id: str, current: ThreadState, target: ThreadState) -> None:
    """Raise :class:`Rejected` unless ``current -> target`` is allowed by the table."""
    ensure_open(thread_id, current)
    if target is current:
        return
    if target not in TRANSITIONS[current]:
        raise Rejected(f"forum state transition {current} -> {target} is not allowed")


def ensure_open(thread_id: str, current: ThreadState) -> None:
    """Raise :class:`Rejected` when the thread is closed (closed is final)."""
    if current is ThreadState.CLOSED:
        raise Rejected(f"forum thread {thread_id} is closed")


def control_thread_id(run_id: str, agent_name: str) -> str:
    """Deterministic id of the control thread of (run_id, agent_name).

    Unlike the reference, segments are not lossy-sanitised into collisions: the id keeps a short
    hash of the exact pair, so ``a.b`` and ``a-b`` never share a thread.
    """
    import hashlib

    def seg(text: str) -> str:
        cleaned = "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")
        return (cleaned or "unknown")[:40]

    digest = hashlib.sha1(f"{run_id}\x00{agent_name}".encode()).hexdigest()[:8]
    return f"fctrl-{seg(run_id)}-{seg(agent_name)}-{digest}"
