"""The API's error mapping: each kind of metawsm error has one status and one stable code."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from metawsm import errors as e
from metawsm.api.errors import from_metawsm, from_validation
from metawsm.services.accept import make_command


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (e.Unauthenticated("no token", reason="missing"), 401, "unauthenticated"),
        (e.Forbidden("no", rule="agents_do_not_answer"), 403, "forbidden"),
        (e.NotFound("no thread"), 404, "not_found"),
        (e.CommandIdReused("other command"), 409, "idempotency_key_reused"),
        (e.Rejected("closed thread"), 409, "rejected"),
        (e.RunStopped("stopped"), 409, "run_stopped"),
        (e.UsageError("bad queue"), 422, "invalid_input"),
        (e.DatabaseUnreachable("down"), 503, "database_unavailable"),
        (e.DatabaseBusy("locked"), 503, "database_unavailable"),
        (e.SchemaNotAtHead("0006"), 503, "schema_not_at_head"),
        (e.WaitTimeout("slow"), 504, "wait_timeout"),
    ],
)
def test_each_error_has_its_status_and_code(error: e.MetawsmError, status: int, code: str) -> None:
    mapped = from_metawsm(error)
    assert (mapped.status, mapped.body.code, mapped.body.message) == (status, code, str(error))


def test_role_and_token_errors_name_their_rule() -> None:
    assert from_metawsm(e.Forbidden("no", rule="agents_do_not_close")).body.rule == (
        "agents_do_not_close"
    )
    assert from_metawsm(e.Unauthenticated("old", reason="expired")).body.rule == "expired"


def test_a_contract_error_names_the_payload_field_without_the_command_tag() -> None:
    signal = {"schema_version": 1, "control_type": "validation", "run_id": "r",
              "agent_name": "a", "status": "meh", "done_criteria": "tests"}  # fmt: skip
    payload = {"run_id": "r", "agent_name": "a", "signal": signal}
    with pytest.raises(ValidationError) as caught:
        make_command("control_signal", payload, actor_type="agent", actor_name="a")
    mapped = from_validation(caught.value, skip=1)
    assert mapped.status == 422
    assert mapped.body.field == "payload.signal.validation.status"
    assert mapped.body.rule == "enum"
