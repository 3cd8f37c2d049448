"""Errors on the wire: every failure is JSON ``{code, message, field, rule}`` with one status.

The mapping from metawsm's error tree to HTTP statuses lives here and nowhere else:

=====================================  ======  ============================
error                                  status  code
=====================================  ======  ============================
invalid input (body, query, header)    422     ``invalid_input``
Unauthenticated                        401     ``unauthenticated``
Forbidden                              403     ``forbidden``
NotFound                               404     ``not_found``
CommandIdReused                        409     ``idempotency_key_reused``
Rejected (a rule), RunStopped          409     ``rejected``, ``run_stopped``
request body too large                 413     ``request_too_large``
database or schema unavailable         503     ``database_unavailable``, ``schema_not_at_head``
waiting for an outcome timed out       504     ``wait_timeout``
anything unexpected                    500     ``internal`` (the details are logged only)
=====================================  ======  ============================
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from metawsm import errors as e

log = logging.getLogger(__name__)


class ErrorBody(BaseModel):
    """The JSON of every error response."""

    code: str
    message: str
    field: str | None = None
    rule: str | None = None


class ApiError(Exception):
    """An error the API answers with ``status`` and an :class:`ErrorBody` (plus ``extra``
    keys, e.g. the outcome of a rejected command)."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        field: str | None = None,
        rule: str | None = None,
        extra: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.body = ErrorBody(code=code, message=message, field=field, rule=rule)
        self.extra = extra or {}
        self.headers = headers


def error_response(error: ApiError) -> JSONResponse:
    """The response of ``error``."""
    content = {**error.body.model_dump(), **error.extra}
    return JSONResponse(content, status_code=error.status, headers=error.headers)


def from_metawsm(exc: e.MetawsmError) -> ApiError:
    """The API error of a metawsm error (see the table of this module)."""
    message = str(exc)
    if isinstance(exc, e.CommandIdReused):
        return ApiError(409, "idempotency_key_reused", message, field="Idempotency-Key",
                        rule="same_key_same_command")  # fmt: skip
    if isinstance(exc, e.Unauthenticated):
        return ApiError(401, "unauthenticated", message, rule=exc.reason,
                        headers={"WWW-Authenticate": "Bearer"})  # fmt: skip
    if isinstance(exc, e.Forbidden):
        return ApiError(403, "forbidden", message, rule=exc.rule)
    if isinstance(exc, e.NotFound):
        return ApiError(404, "not_found", message)
    if isinstance(exc, e.UsageError):
        return ApiError(422, "invalid_input", message)
    if isinstance(exc, e.Rejected):
        return ApiError(409, "rejected", message)
    if isinstance(exc, e.RunStopped):
        return ApiError(409, "run_stopped", message)
    if isinstance(exc, e.WaitTimeout):
        return ApiError(504, "wait_timeout", message)
    if isinstance(exc, e.SchemaNotAtHead):
        return ApiError(503, "schema_not_at_head", message, headers={"Retry-After": "5"})
    if isinstance(exc, e.DatabaseUnreachable | e.DatabaseBusy):
        return ApiError(503, "database_unavailable", message, headers={"Retry-After": "1"})
    if isinstance(exc, e.Transient):
        return ApiError(503, "unavailable", message, headers={"Retry-After": "1"})
    return ApiError(500, "failed", message)


def from_validation(exc: ValidationError | RequestValidationError, skip: int = 0) -> ApiError:
    """422 naming the first invalid field and its rule (every problem in ``message``);
    ``skip`` leading parts of each location are left out (a command's type tag)."""
    problems = list(exc.errors())
    parts = [f"{_location(p, skip)}: {_rule_text(p)}" for p in problems]
    first = problems[0] if problems else {}
    return ApiError(
        422,
        "invalid_input",
        "invalid input: " + "; ".join(parts),
        field=_location(first, skip) if first else None,
        rule=str(first.get("type")) if first else None,
    )


def _location(problem: Any, skip: int) -> str:
    loc = [str(p) for p in problem.get("loc", ())[skip:]]
    return ".".join(p for p in loc if not p.startswith(("function-", "tagged")))


def _rule_text(problem: Any) -> str:
    return str(problem.get("msg", "invalid")).removeprefix("Value error, ")


def install(app: FastAPI) -> None:
    """Answer every error of ``app`` with the JSON error body."""

    @app.exception_handler(ApiError)
    async def _api(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(e.MetawsmError)
    async def _metawsm(_: Request, exc: e.MetawsmError) -> JSONResponse:
        return error_response(from_metawsm(exc))

    @app.exception_handler(RequestValidationError)
    async def _request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(from_validation(exc))

    @app.exception_handler(ValidationError)
    async def _contract(_: Request, exc: ValidationError) -> JSONResponse:
        # A command's contract (services/accept.py make_command): its location starts with
        # the command type, the tag of the union of commands.
        return error_response(from_validation(exc, skip=1))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(ApiError(exc.status_code, code, str(exc.detail)))

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return error_response(ApiError(500, "internal", "internal error (logged by the server)"))
