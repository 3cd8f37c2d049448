"""A steady mixed load through the product's submit path, at a fixed rate.

:class:`LoadMix` decides what comes next (pure: a cycle of every forum command and the control
signals, on threads opened a while before so that most commands apply); :class:`LoadDriver`
submits it from a thread of its own with the drill's composition root, as the CLI would, and
keeps every command id it submitted.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from metawsm.bootstrap import Container
from metawsm.messages.commands import AnyCommand
from metawsm.messages.common import Actor
from metawsm.services import runs
from metawsm.services.submit import make_command, submit

TICKET = "DRILL-1"
AGENT = "drill-agent"
# A thread is a target once this many commands were submitted after its opening: by then it is
# almost always applied, so commands on it apply rather than wait on it.
SETTLE_GAP = 10
OPEN_THREADS = 8  # the oldest open thread is closed when more are open
CYCLE = (
    "open_thread", "add_post", "set_priority", "assign_thread", "answer_thread", "add_post",
    "change_state", "guidance_request", "guidance_answer", "close_thread",
)  # fmt: skip
STATES = ("triaged", "waiting_operator", "waiting_human", "answered")
PRIORITIES = ("low", "normal", "high", "urgent")


@dataclass
class LoadMix:
    """The next command of the mix: ``next_command()`` in a cycle over :data:`CYCLE`."""

    run_id: str
    prefix: str = "d"
    n: int = 0
    threads: deque[tuple[str, int]] = field(default_factory=deque)  # (thread id, opened at n)

    def next_command(self) -> AnyCommand:
        """The next command to submit."""
        kind = CYCLE[self.n % len(CYCLE)]
        target = self._target()
        if kind in ("guidance_request", "guidance_answer"):
            command = self._signal(kind)
        elif kind == "open_thread" or target is None:
            command = self._open()
        else:
            command = self._on_thread(kind, target)
        self.n += 1
        return command

    def _target(self) -> str | None:
        ready = [t for t, opened in self.threads if self.n - opened >= SETTLE_GAP]
        return ready[self.n % len(ready)] if ready else None

    def _open(self) -> AnyCommand:
        thread_id = f"{self.prefix}-{self.n}"
        self.threads.append((thread_id, self.n))
        return _command(
            "open_thread", "agent",
            thread_id=thread_id, ticket=TICKET, run_id=self.run_id,
            title=f"drill thread {self.n}", body="what now?",
        )  # fmt: skip

    def _on_thread(self, kind: str, thread_id: str) -> AnyCommand:
        k = self.n // len(CYCLE)
        if kind == "add_post":
            return _command("add_post", "agent", thread_id=thread_id, body=f"detail {self.n}")
        if kind == "set_priority":
            priority = PRIORITIES[k % len(PRIORITIES)]
            return _command("set_priority", "operator", thread_id=thread_id, priority=priority)
        if kind == "assign_thread":
            return _command(
                "assign_thread", "operator", thread_id=thread_id,
                assignee_type="human", assignee_name=f"human-{k % 3}",
            )  # fmt: skip
        if kind == "answer_thread":
            return _command("answer_thread", "human", thread_id=thread_id, body=f"do {self.n}")
        if kind == "change_state":
            state = STATES[k % len(STATES)]  # some moves break the transition table: rejected
            return _command("change_state", "operator", thread_id=thread_id, to_state=state)
        return self._close()

    def _close(self) -> AnyCommand:
        if len(self.threads) <= OPEN_THREADS:
            return self._open()
        thread_id, _ = self.threads.popleft()
        return _command("close_thread", "operator", thread_id=thread_id, reason="drill")

    def _signal(self, kind: str) -> AnyCommand:
        signal: dict[str, Any] = {"run_id": self.run_id, "agent_name": AGENT, "control_type": kind}
        if kind == "guidance_request":
            signal["question"] = f"question {self.n}?"
            actor = "agent"
        else:
            signal["answer"] = f"answer {self.n}"
            actor = "operator"
        payload: dict[str, object] = {"run_id": self.run_id, "agent_name": AGENT, "signal": signal}
        return make_command("control_signal", payload, actor_type=actor, actor_name=f"{actor}-1")


def _command(command_type: str, actor: str, **payload: Any) -> AnyCommand:
    return make_command(command_type, payload, actor_type=actor, actor_name=f"{actor}-1")


def create_drill_run(container: Container) -> str:
    """The run whose agent the mix's control signals are for; its id."""
    return runs.create_run(
        container.runtime,
        tickets=[TICKET],
        agents=[AGENT],
        mode="run",
        brief=None,
        actor=Actor(type="operator", name="drill"),
    )


@dataclass
class Submitted:
    """What the driver handed to submit: ids accepted, ids whose submit raised (they may or
    may not have been written: the tally looks them up), and publishes that failed."""

    accepted: list[str] = field(default_factory=list)
    uncertain: list[str] = field(default_factory=list)
    not_published: int = 0
    errors: list[str] = field(default_factory=list)


class LoadDriver(threading.Thread):
    """Submits the mix at ``rate`` commands per second until stopped."""

    def __init__(self, container: Container, mix: LoadMix, rate: float) -> None:
        super().__init__(name="drill-load", daemon=True)
        self.container = container
        self.mix = mix
        self.interval_s = 1.0 / rate
        self.submitted = Submitted()
        self.lock = threading.Lock()
        self._halt = threading.Event()

    def run(self) -> None:
        """Submit on schedule; a submit that falls behind is not made up for in a burst."""
        due = time.monotonic()
        while not self._halt.is_set():
            self._submit_one(self.mix.next_command())
            due = max(due + self.interval_s, time.monotonic() - self.interval_s)
            self._halt.wait(max(0.0, due - time.monotonic()))  # pacing the load

    def _submit_one(self, command: AnyCommand) -> None:
        try:
            outcome = submit(self.container.runtime, command)
        except Exception as exc:  # the drill reports it; the command may not be recorded
            with self.lock:
                self.submitted.uncertain.append(command.command_id)
                if len(self.submitted.errors) < 5:
                    self.submitted.errors.append(f"{type(exc).__name__}: {exc}")
            return
        with self.lock:
            self.submitted.accepted.append(command.command_id)
            if not outcome.published:
                self.submitted.not_published += 1

    def stop(self) -> Submitted:
        """Stop submitting and return what was submitted."""
        self._halt.set()
        self.join(timeout=60)
        with self.lock:
            return self.submitted

    def count(self) -> int:
        """Commands submitted so far (accepted or not)."""
        with self.lock:
            return len(self.submitted.accepted) + len(self.submitted.uncertain)
