"""Pure folds from events to read-model rows: the one definition of what a view contains.

The projector and ``projections rebuild`` both use these, so a rebuild equals the live models.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from datetime import datetime

HUMAN_OR_OPERATOR = ("human", "operator")
# The event types whose payload a fold reads (opened_view, _apply): a rebuild reads no other
# event's payload from the log (a post's body is most of the log's bytes).
PAYLOAD_READ = (
    "forum.thread.opened",
    "forum.assigned",
    "forum.state.changed",
    "forum.priority.changed",
)
# Lists sort by urgency, highest first: a number in the view, so one index serves the ORDER BY.
URGENCY = {"urgent": 4, "high": 3, "normal": 2, "low": 1}


class FoldableEvent(Protocol):
    """What the fold reads of an event: a wire :class:`~metawsm.messages.events.Event`, or a
    lighter object built from a trusted log row (``projections rebuild``)."""

    @property
    def event_type(self) -> str: ...
    @property
    def occurred_at(self) -> datetime: ...
    @property
    def sequence(self) -> int | None: ...
    @property
    def thread_id(self) -> str | None: ...
    @property
    def thread_seq(self) -> int | None: ...
    @property
    def run_id(self) -> str | None: ...
    @property
    def ticket(self) -> str | None: ...
    @property
    def agent_name(self) -> str | None: ...
    # The actor as text (not the wire model's ``Actor``): a rebuild reads them from the log's
    # columns as they are, without making an actor and its enum for each of ~500k events.
    @property
    def actor_type(self) -> str: ...
    @property
    def actor_name(self) -> str: ...
    @property
    def payload(self) -> dict[str, Any]: ...


def fold_thread(
    events: Iterable[FoldableEvent], *, is_control: bool = False
) -> dict[str, Any] | None:
    """Fold a thread's events (any order; sorted by thread_seq here) into its view row."""
    ordered = sorted(events, key=lambda e: e.thread_seq or 0)
    if not ordered or ordered[0].event_type != "forum.thread.opened":
        return None  # the opening event is not in the log (yet): nothing to show
    view = opened_view(ordered[0], is_control=is_control)
    for event in ordered[1:]:
        advance(view, event)
    return view


def advance(view: dict[str, Any], event: FoldableEvent) -> None:
    """Apply the thread's next event (``thread_seq`` one past the view's) to ``view`` in place.

    The one step of :func:`fold_thread`: the projector calls it alone when an event arrives in
    order, so the incremental view and the re-folded one are the same by construction.
    """
    _apply(view, event)
    _track_actor(view, event)
    _derive(view)


def advance_underived(view: dict[str, Any], event: FoldableEvent) -> None:
    """:func:`advance` without recomputing the derived columns, for a fold that moves a view
    over many events: it calls :func:`derive` once after the last (the derived columns are a
    function of the others, so the view is the same as after :func:`advance` at every step)."""
    _apply(view, event)
    _track_actor(view, event)


def derive(view: dict[str, Any]) -> None:
    """Recompute the derived columns (``urgency``, ``is_unanswered``) of ``view`` in place."""
    _derive(view)


def opened_view(event: FoldableEvent, *, is_control: bool = False) -> dict[str, Any]:
    """The view of a thread whose only event so far is its ``forum.thread.opened`` event."""
    p = event.payload
    view = {
        "thread_id": event.thread_id,
        "ticket": event.ticket,
        "run_id": event.run_id,
        "agent_name": event.agent_name,
        "title": p["title"],
        "state": "new",
        "priority": p["priority"],
        "assignee_type": None,
        "assignee_name": None,
        "opened_by_type": event.actor_type,
        "opened_by_name": event.actor_name,
        "is_control": is_control,
        "posts_count": 1,
        "last_post_at": event.occurred_at,
        "last_post_by_type": event.actor_type,
        "last_post_by_name": event.actor_name,
        "opened_at": event.occurred_at,
        "updated_at": event.occurred_at,
        "closed_at": None,
        "last_event_sequence": 0,
        "last_thread_seq": 0,
        "last_actor_type": None,
        "last_non_system_actor_type": None,
        "last_human_or_operator_sequence": 0,
        "last_agent_sequence": 0,
        "urgency": 0,
        "is_unanswered": False,
    }
    _track_actor(view, event)
    _derive(view)
    return view


def _derive(view: dict[str, Any]) -> None:
    """The columns computed from the others, kept in the row so lists and queues use an index."""
    view["urgency"] = urgency(view["priority"])
    view["is_unanswered"] = is_unanswered(view)


def _apply(view: dict[str, Any], event: FoldableEvent) -> None:
    # The payload is read only where it is used: a rebuild decodes it lazily (posts need none).
    kind = event.event_type
    if kind in ("forum.post.added", "forum.control.signal"):
        view["posts_count"] += 1
        view["last_post_at"] = event.occurred_at
        view["last_post_by_type"] = event.actor_type
        view["last_post_by_name"] = event.actor_name
    elif kind == "forum.assigned":
        view["assignee_type"] = event.payload["to_assignee_type"]
        view["assignee_name"] = event.payload["to_assignee_name"]
    elif kind == "forum.state.changed":
        view["state"] = event.payload["to_state"]
    elif kind == "forum.priority.changed":
        view["priority"] = event.payload["to_priority"]
    elif kind == "forum.thread.closed":
        view["state"] = "closed"
        view["closed_at"] = event.occurred_at
    if kind != "forum.sla.escalation_requested":
        view["updated_at"] = event.occurred_at


def _track_actor(view: dict[str, Any], event: FoldableEvent) -> None:
    seq = event.sequence or 0
    actor = event.actor_type
    view["last_event_sequence"] = max(view["last_event_sequence"], seq)
    view["last_thread_seq"] = max(view["last_thread_seq"], event.thread_seq or 0)
    if event.event_type == "forum.sla.escalation_requested":
        return  # escalations are the system talking: they do not count as a reply
    view["last_actor_type"] = actor
    if actor != "system":
        view["last_non_system_actor_type"] = actor
    if actor in HUMAN_OR_OPERATOR:
        view["last_human_or_operator_sequence"] = seq
    elif actor == "agent":
        view["last_agent_sequence"] = seq


def fold_stats(views: Iterable[dict[str, Any]]) -> dict[tuple[str, str, str, str], int]:
    """Thread counts per (ticket, run_id or '', state, priority)."""
    return dict(Counter(stats_key(v) for v in views))


def stats_key(view: dict[str, Any]) -> tuple[str, str, str, str]:
    """The stats row a thread view counts in: (ticket, run_id or '', state, priority)."""
    return (view["ticket"], view["run_id"] or "", view["state"], view["priority"])


def urgency(priority: str) -> int:
    """How urgent a priority is: 4 urgent, 3 high, 2 normal, 1 low, 0 anything else."""
    return URGENCY.get(priority, 0)


def is_unanswered(view: dict[str, Any]) -> bool:
    """Spec §3.7: waiting on a human/operator after an agent spoke last."""
    return (
        view["state"] in ("new", "waiting_human", "waiting_operator")
        and view["last_agent_sequence"] > view["last_human_or_operator_sequence"]
        and view["last_non_system_actor_type"] == "agent"
    )
