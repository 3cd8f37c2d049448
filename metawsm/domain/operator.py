"""Operator decisions, from the typed snapshot only (first match wins)."""

import json
from datetime import datetime
from typing import TYPE_CHECKING, NamedTuple

from metawsm.domain.snapshot import RunSnapshot

INTENTS = ("escalate_guidance", "escalate_blocked", "close_ready", "stale_run", "noop")


class Decision(NamedTuple):
    """What the operator decided for one run, why, and the command that acts on it.

    A ``NamedTuple``: a dataclass costs ~1 ms to make at import, in every ``operator`` process.
    """

    run_id: str
    intent: str
    reason: str
    command: str | None
    executes: bool
    fingerprint: str


# ``json.dumps(..., sort_keys=True, default=str)``'s encoder, made once: json.dumps makes a new
# one per call when given options (a fifth of a decision's time; 1,000 runs a pass). The same text.
_CANONICAL = json.JSONEncoder(sort_keys=True, default=str)


def _fingerprint(intent: str, facts: object) -> str:
    text = _CANONICAL.encode([intent, facts])
    return _sha256(text.encode()).hexdigest()[:16]


# SHA-256 built into the interpreter: hashlib loads OpenSSL first (~11 M instructions of every
# operator process, for 1,000 digests of a few bytes). The same digest either way.
if TYPE_CHECKING:
    from hashlib import sha256 as _sha256
else:
    try:
        from _sha256 import sha256 as _sha256
    except ImportError:  # an interpreter without it (3.12 renamed it _sha2)
        from hashlib import sha256 as _sha256


def decide(run: RunSnapshot, *, mode: str, now: datetime, stale_after_s: int) -> Decision:
    """Decide for one run. ``auto`` executes close_ready; other intents never execute."""
    rid = run.run_id
    if run.pending_guidance:
        ids = sorted(g.request_event_id for g in run.pending_guidance)
        g = run.pending_guidance[0]
        return Decision(
            rid,
            "escalate_guidance",
            f"operator input is required: {g.question}",
            f"metawsm forum signal --run-id {rid} --agent-name {g.agent_name}"
            " --type guidance_answer --answer '<answer>'",
            False,
            _fingerprint("escalate_guidance", ids),
        )
    sick = sorted(a.agent_name for a in run.agents if a.status in ("failed", "stalled", "dead"))
    dead = sorted(b.message_id or "" for b in run.blockers if b.kind == "dead_letter")
    if sick or dead or run.status == "failed":
        reason = "; ".join(
            filter(
                None,
                [
                    f"unhealthy agents: {', '.join(sick)}" if sick else "",
                    f"dead letters: {len(dead)}" if dead else "",
                    "run failed" if run.status == "failed" else "",
                ],
            )
        )
        return Decision(
            rid,
            "escalate_blocked",
            reason,
            f"metawsm run show --run-id {rid}",
            False,
            _fingerprint("escalate_blocked", [sick, dead, run.status]),
        )
    gates = [b for b in run.blockers if b.kind == "gate"]
    if run.status == "completed" and not gates:
        return Decision(
            rid,
            "close_ready",
            "every close gate passes",
            f"metawsm close --run-id {rid}",
            mode == "auto",
            # Whether it executes is part of it: an assist decision must not silence auto.
            _fingerprint("close_ready", [run.status, mode == "auto"]),
        )
    idle_s = (now - (run.last_event_at or run.updated_at)).total_seconds()
    if run.status in ("running", "awaiting_guidance") and idle_s >= stale_after_s:
        return Decision(
            rid,
            "stale_run",
            f"no event for {int(idle_s // 60)} min",
            f"metawsm run show --run-id {rid}",
            False,
            _fingerprint("stale_run", run.last_event_sequence),
        )
    return Decision(rid, "noop", f"run is {run.status}", None, False, _fingerprint("noop", None))
