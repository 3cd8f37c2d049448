"""The one error tree of metawsm.

Two branches matter to the pipeline: :class:`Rejected` (the input breaks a rule; final, recorded,
never retried) and :class:`Transient` (something we depend on is busy or away; retried with
backoff). Every error carries the process exit code the CLI uses for it.
"""

from __future__ import annotations

# Exit codes, documented in `metawsm --help` and the README.
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_TIMEOUT = 4
EXIT_RUN_STOPPED = 5
# watch only: a guidance request waits (metawsm.domain.watch.WATCH_EXIT).
EXIT_GUIDANCE_NEEDED = 6
# Ctrl-C (128 + SIGINT), as a shell reports it.
EXIT_INTERRUPTED = 130


class MetawsmError(Exception):
    """Base of every error metawsm raises on purpose."""

    exit_code: int = EXIT_FAILED


class Rejected(MetawsmError):
    """The command or input breaks a rule; final, recorded, never retried."""


class NotFound(Rejected):
    """A thread, run or record named by the input does not exist."""


class InvalidMessage(Rejected):
    """A message failed schema validation; it is dead-lettered at once."""


class DeadLettered(Rejected):
    """The message failed for good and was recorded in the dead-letter table."""


class Forbidden(Rejected):
    """The acting identity may not do this (a role rule); nothing was changed.

    ``rule`` names the rule broken (e.g. ``agents_do_not_answer``); ``code`` is the stable error
    code of the JSON error (``forbidden``). The message starts ``forbidden (<rule>): `` so a
    rejection recorded by a handler (the ledger's reason) still says which rule it was.
    """

    code = "forbidden"
    PREFIX = "forbidden ("

    def __init__(self, message: str, *, rule: str) -> None:
        super().__init__(f"{self.PREFIX}{rule}): {message}")
        self.rule = rule

    @classmethod
    def rule_of(cls, reason: str | None) -> str | None:
        """The rule named by a recorded rejection ``reason``, or None when it is not one."""
        if not reason or not reason.startswith(cls.PREFIX) or "): " not in reason:
            return None
        return reason[len(cls.PREFIX) : reason.index("): ")]


class Unauthenticated(Rejected):
    """A bearer token is missing, malformed, unknown, expired or revoked (the token itself is
    never in the message); ``reason`` says which, ``code`` is ``unauthenticated``."""

    code = "unauthenticated"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class UsageError(MetawsmError):
    """Bad arguments or settings given by the user; nothing was changed."""

    exit_code = EXIT_USAGE


class CommandIdReused(UsageError):
    """A command id already names a different command (another type, payload or actor)."""


class ConfigError(UsageError):
    """A setting has an invalid value; the process stops at start."""


class Transient(MetawsmError):
    """A dependency is busy or unreachable; the work is retried with backoff."""


class DatabaseBusy(Transient):
    """The database refused a write for now (locked, serialization failure)."""


class Unreachable(Transient):
    """A service we depend on cannot be reached."""

    exit_code = EXIT_UNREACHABLE


class DatabaseUnreachable(Unreachable):
    """The database cannot be reached or opened."""


class DatabaseMissing(Unreachable):
    """The SQLite database file does not exist; only `db upgrade` and `up` create one."""


class BrokerUnreachable(Unreachable):
    """The Redis broker cannot be reached."""


class SchemaNotAtHead(MetawsmError):
    """The database schema is not at the migration head; run `metawsm db upgrade`."""

    exit_code = EXIT_UNREACHABLE


class WaitTimeout(MetawsmError):
    """Waiting for an outcome took longer than the given timeout."""

    exit_code = EXIT_TIMEOUT


class RunStopped(MetawsmError):
    """The run stopped while the caller was waiting on it."""

    exit_code = EXIT_RUN_STOPPED


class StackAlreadyRunning(MetawsmError):
    """``metawsm up`` refused: another ``metawsm up`` holds the same database."""


class BrokerShared(MetawsmError):
    """``metawsm up`` refused: another stack (another database) uses the same broker and queues."""


class PortTaken(MetawsmError):
    """``metawsm up`` refused: a port it must listen on is taken by another program."""


class DrillAborted(MetawsmError):
    """An incident drill could not run to its end (a part of its scratch stack did not start or
    a fault could not be injected); nothing was measured. Exit 1, as for a failed drill."""
