"""The writes of the command line over the HTTP API: each command type's endpoint, and the
wait for a guidance answer.

``run_write`` (cli/options.py) validates a command as it does locally (the same messages,
naming the option), then hands it here when ``METAWSM_API_URL`` is set: the API acts as the
token's identity, waits as asked (``?wait=``), and answers with the outcome ``--json`` prints.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from metawsm.cli.remote import WAIT_MARGIN_S, ApiClient, ApiRefused, segment
from metawsm.errors import WaitTimeout

if TYPE_CHECKING:
    from metawsm.services.accept import Outcome

# The longest wait one request may ask for (the API's limit, docs/api.md): a longer wait for a
# guidance answer asks again.
MAX_WAIT_S = 300.0
# command type → the endpoint under /api/v1 (``{thread_id}`` taken out of the payload).
ENDPOINTS = {
    "open_thread": "/forum/threads",
    "add_post": "/forum/threads/{thread_id}/posts",
    "answer_thread": "/forum/threads/{thread_id}/answer",
    "assign_thread": "/forum/threads/{thread_id}/assign",
    "change_state": "/forum/threads/{thread_id}/state",
    "set_priority": "/forum/threads/{thread_id}/priority",
    "close_thread": "/forum/threads/{thread_id}/close",
    "control_signal": "/control/signals",
}


def submit_remote(
    client: ApiClient,
    command_type: str,
    payload: dict[str, Any],
    *,
    wait: str | None,
    timeout: float | None,
    command_id: str | None,
) -> Outcome:
    """Send the write to the API and return its outcome (a rejected or dead-lettered command's
    outcome too: the caller renders it and exits 1).

    Raises:
        ApiRefused: the API refused the request (403 a role rule, 422 invalid input, 504 no
            outcome within the wait...), with the exit code of the same failure locally.
    """
    path, body = _route(command_type, payload)
    limit = min(timeout, MAX_WAIT_S) if timeout is not None else None
    query = {"wait": wait or "none", "timeout_s": limit}
    headers = {"Idempotency-Key": command_id} if command_id else None
    try:
        _, answer = client.post(path, body, query, headers=headers, wait_s=limit or MAX_WAIT_S)
    except ApiRefused as exc:
        outcome = exc.extra.get("outcome")
        if exc.api_code in ("rejected", "dead_lettered") and isinstance(outcome, dict):
            return outcome_of(outcome)
        raise
    return outcome_of(answer)


def _route(command_type: str, payload: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    template = ENDPOINTS[command_type]
    body = {k: v for k, v in payload.items() if v is not None}
    if "{thread_id}" in template:
        return template.format(thread_id=segment(str(body.pop("thread_id")))), body
    return template, body


def outcome_of(data: dict[str, Any]) -> Outcome:
    """The outcome the API answered, as the local write path has it."""
    from metawsm.services.accept import Outcome

    return Outcome(
        command_id=data["command_id"],
        command_type=data["command_type"],
        status=data["status"],
        reason=data.get("reason"),
        thread_id=data.get("thread_id"),
        delivery_attempts=int(data.get("delivery_attempts") or 0),
        published=bool(data.get("published", True)),
        publish_error=data.get("publish_error"),
    )


def wait_for_answer_remote(client: ApiClient, command_id: str, timeout_s: float) -> dict[str, Any]:
    """The answer to the guidance request written by ``command_id`` (what ``--json`` prints),
    asking the API again while its waits end before ``timeout_s``.

    Raises:
        WaitTimeout: no answer came in time (exit 4).
        ApiRefused: 409 ``run_stopped`` (exit 5) when the run stopped, or another refusal.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        remaining = max(deadline - time.monotonic(), 0.001)
        ask = min(remaining, MAX_WAIT_S)
        try:
            answer: dict[str, Any] = client.get(
                f"/control/signals/{segment(command_id)}/answer",
                {"timeout_s": round(ask, 3)},
                wait_s=ask + WAIT_MARGIN_S,
            )
            return answer
        except ApiRefused as exc:
            if exc.api_code != "wait_timeout":
                raise
            if time.monotonic() >= deadline:
                raise WaitTimeout(
                    f"no guidance answer to {command_id} within {timeout_s:g} s"
                ) from None
