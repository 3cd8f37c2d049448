"""Run actions from the board's forms: close (or check it by a dry run), stop, resume, iterate,
report a failed agent running again, and redrive a run's dead letter.

Each calls the service the API's route of the same name calls (``api/routes/runs.py``,
``api/routes/ops.py``) as the signed-in identity, through ``actions.act``: the CSRF check, the
role rules of the service layer (an agent's session is refused with the rule named on the
page, whatever the form says), and a redirect back to the run page saying what happened.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import RedirectResponse
from starlette.concurrency import run_in_threadpool

from metawsm.api.state import api_state
from metawsm.board.actions import act, form_of, submit
from metawsm.board.session import board_identity
from metawsm.identity import Identity
from metawsm.messages.common import MAX_ID_CHARS, MAX_NAME_CHARS

router = APIRouter(include_in_schema=False)
Signed = Annotated[Identity, Depends(board_identity)]
RunId = Annotated[str, Path(min_length=1, max_length=MAX_NAME_CHARS)]
Name = Annotated[str, Path(min_length=1, max_length=MAX_NAME_CHARS)]
MessageId = Annotated[str, Path(min_length=1, max_length=MAX_ID_CHARS)]


async def _form(request: Request, run_id: str) -> dict[str, str]:
    form = await form_of(request)
    form.setdefault("next", f"/runs/{run_id}")
    return form


async def _blocking(
    request: Request, form: dict[str, str], done: str, write: Callable[..., Any], *args: Any
) -> RedirectResponse:
    """``act`` on a blocking service call ``write(*args)`` (run in a thread)."""
    return await act(request, form, done, lambda: run_in_threadpool(write, *args))


@router.post("/runs/{run_id}/close", response_model=None)
async def close_run(request: Request, identity: Signed, run_id: RunId) -> RedirectResponse:
    """Close the run when its gates all pass (``dry_run=1``: only check, change nothing)."""
    from metawsm.services import gates

    form = await _form(request, run_id)
    dry = form.get("dry_run") == "1"
    rt = api_state(request).container.runtime

    def close() -> str:
        return gates.close_run(rt, run_id, dry_run=dry, actor=identity)

    done = "Dry run: every gate passes, the run can close" if dry else "Run closed"
    return await _blocking(request, form, done, close)


@router.post("/runs/{run_id}/stop", response_model=None)
async def stop_run(request: Request, identity: Signed, run_id: RunId) -> RedirectResponse:
    """Stop the run."""
    from metawsm.services import lifecycle

    form = await _form(request, run_id)
    rt = api_state(request).container.runtime
    return await _blocking(request, form, "Run stopped", lifecycle.stop_run, rt, run_id, identity)


@router.post("/runs/{run_id}/resume", response_model=None)
async def resume_run(request: Request, identity: Signed, run_id: RunId) -> RedirectResponse:
    """Resume a stopped, paused or failed run."""
    from metawsm.services import lifecycle

    form = await _form(request, run_id)
    rt = api_state(request).container.runtime
    resume = lifecycle.resume_run
    return await _blocking(request, form, "Run resumed", resume, rt, run_id, identity)


@router.post("/runs/{run_id}/iterate", response_model=None)
async def iterate_run(request: Request, identity: Signed, run_id: RunId) -> RedirectResponse:
    """Start a new control epoch and post the feedback on each agent's control thread (as the
    API's ``iterate`` does)."""
    from metawsm.services import lifecycle

    form = await _form(request, run_id)
    feedback = form.get("feedback", "")
    rt = api_state(request).container.runtime

    async def step() -> Any:
        _, _, threads = await run_in_threadpool(
            lifecycle.iterate_run, rt, run_id, feedback, identity
        )
        for thread_id in threads:
            post = {"thread_id": thread_id, "body": f"Operator feedback: {feedback.strip()}"}
            await submit(request, identity, "add_post", post)

    return await act(request, form, "New iteration started", step)


@router.post("/runs/{run_id}/agents/{agent_name}/running", response_model=None)
async def agent_running(
    request: Request, identity: Signed, run_id: RunId, agent_name: Name
) -> RedirectResponse:
    """Report a failed agent running again (what the ``agent`` gate's fix says)."""
    from metawsm.services import lifecycle

    form = await _form(request, run_id)
    rt = api_state(request).container.runtime

    report, done = lifecycle.set_agent_status, f"Agent {agent_name} reported running"
    return await _blocking(request, form, done, report, rt, run_id, agent_name, "running", identity)


@router.post("/runs/{run_id}/dead-letters/{message_id}/redrive", response_model=None)
async def redrive(
    request: Request, identity: Signed, run_id: RunId, message_id: MessageId
) -> RedirectResponse:
    """Redrive one of the run's dead letters (operators only: the service refuses others)."""
    from metawsm.services import deadletters

    form = await _form(request, run_id)
    rt = api_state(request).container.runtime

    def redrive_one() -> dict[str, Any]:
        return deadletters.redrive(rt, message_id, identity=identity)

    return await _blocking(request, form, f"Redriven {message_id}", redrive_one)
