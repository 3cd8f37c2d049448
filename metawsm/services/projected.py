"""How far the read models have caught up with the event log.

A command's events commit with its state; an events worker projects them into the read models a
moment later. A reader that shows read models but follows the log (the board) must not treat an
event as shown before it is projected: these reads say which events are, and below which
sequence every event is.
"""

from __future__ import annotations

from metawsm.services.accept import PROJECTION
from metawsm.storage.dbapi import Reader

# How far below the log's head the projected-through position is looked for: a read model
# further behind than this is stale anyway (workers stopped), and the scan stays bounded.
WINDOW = 500

_FIRST_UNPROJECTED = (
    "SELECT MIN(e.sequence) FROM forum_events e WHERE e.sequence > :floor AND e.sequence <= :head"
    " AND NOT EXISTS (SELECT 1 FROM forum_projection_events l"
    " WHERE l.projection = :projection AND l.event_id = e.event_id)"
)
_IS_PROJECTED = (
    "SELECT 1 FROM forum_projection_events WHERE projection = :projection AND event_id = :eid"
)


def projected_through(db: Reader, head: int, window: int = WINDOW) -> int:
    """The highest sequence ``s <= head`` such that every event in ``(head - window, s]`` is in
    the read models: a page rendered now shows at least everything up to it."""
    floor = max(0, head - window)
    first = db.scalar(_FIRST_UNPROJECTED, {"floor": floor, "head": head, "projection": PROJECTION})
    return head if first is None else int(first) - 1


def is_event_projected(db: Reader, event_id: str) -> bool:
    """True when the event is in the read models."""
    return bool(db.rows(_IS_PROJECTED, {"projection": PROJECTION, "eid": event_id}))
