"""Who acts: the identity a command, a read or a token operation is done as.

An identity comes from a bearer token (:func:`metawsm.services.tokens.authenticate`) or, in a
local trusted shell without a token, from settings and flags (docs/identities.md). Either way
the same role rules apply (:mod:`metawsm.services.authorization`). This module imports nothing
but the standard library: the domain and every entrypoint may use it.
"""

from __future__ import annotations

from dataclasses import dataclass

ACTOR_TYPES = ("agent", "operator", "human", "system")


@dataclass(frozen=True)
class Identity:
    """The acting identity: ``actor_type`` (agent, operator, human or system), ``actor_name``,
    the run a run-bound token is limited to (``run_id``) and the token it was proven with
    (``token_id``; None for a local identity built from settings and flags)."""

    actor_type: str
    actor_name: str
    run_id: str | None = None
    token_id: str | None = None

    def __post_init__(self) -> None:
        if self.actor_type not in ACTOR_TYPES:
            raise ValueError(
                f"actor_type must be one of {', '.join(ACTOR_TYPES)} (got {self.actor_type!r})"
            )
        if not self.actor_name.strip():
            raise ValueError("actor_name is required (blank)")

    @property
    def proven(self) -> bool:
        """True when a token proved this identity; a local one is only declared (flags,
        settings), so the limits of place (an agent's runs, its own agent) do not apply to it."""
        return self.token_id is not None

    @property
    def label(self) -> str:
        """``type/name``, as messages and logs name an actor (never a secret)."""
        return f"{self.actor_type}/{self.actor_name}"
