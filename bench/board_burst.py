"""Many open boards refreshing at once: what one event costs the API when N pages follow it.

Every open board re-reads its live part after an event (``static/board.js``, after a 120 ms
pause, one request at a time per page). ``burst`` opens ``clients`` signed-in sessions and,
``rounds`` times, has all of them fetch the inbox's live part at the same moment (a barrier),
as they would after one event; it reports the server time of those requests and how long the
slowest of each round took (the round's wall time: when the last board is up to date).

The clients are threads of the bench's process, which serves the API too: their HTTP work
(~1-2 ms of CPU a request) competes with the server's for the one interpreter.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

LIVE = {"X-Board-Fragment": "live"}


def burst(
    signed_in: Callable[[], httpx.Client], clients: int, rounds: int, path: str = "/"
) -> dict[str, Any]:
    """``rounds`` rounds of ``clients`` simultaneous live refreshes of ``path``."""
    sessions = [signed_in() for _ in range(clients)]
    server_ms: list[float] = []
    round_ms: list[float] = []
    gate = threading.Barrier(clients)

    def one(client: httpx.Client) -> float:
        gate.wait(30)
        response = client.get(path, headers=LIVE)
        response.raise_for_status()
        return float(response.headers["server-timing"].removeprefix("app;dur="))

    try:
        with ThreadPoolExecutor(clients) as pool:
            for _ in range(rounds):
                started = time.perf_counter()
                server_ms += list(pool.map(one, sessions))
                round_ms.append((time.perf_counter() - started) * 1000)
    finally:
        for session in sessions:
            session.close()
    return {"clients": clients, "rounds": rounds, "path": path, "server_ms": server_ms,
            "round_ms": round_ms}  # fmt: skip
