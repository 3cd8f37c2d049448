"""What a scale dataset holds: the seeded scripts of commands for forum threads and runs.

A script is a list of :class:`Step` (command type, payload, actor) applied in order; scripts are
interleaved round-robin by the builder, so each thread's own order holds while activity on many
threads is mixed, as in production. Everything is drawn from one ``random.Random(seed)``.

Forum threads end in: new 4 %, triaged 10 %, waiting_operator 15 %, waiting_human 2 %,
answered 34 %, closed 35 % (so the SLA pass escalates about 6 % of threads, twice each); about
1.4 posts besides the opening, 40 % assigned, 20 % re-prioritised; 5 % belong to a run.
Each run has two agents whose control threads carry guidance requests (80 % answered, half of
them through ``forum answer`` on the control thread), completions and validations; no run
completes, so all of them stay active (running or awaiting guidance); one run in ten has a long
conversation (ten more request/answer rounds).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from metawsm.domain.forum import control_thread_id

PRIORITIES = ("low", "normal", "high", "urgent")
PRIORITY_WEIGHTS = (20, 50, 20, 10)
ENDINGS = ("new", "triaged", "waiting_operator", "waiting_human", "answered", "closed")
ENDING_WEIGHTS = (4, 10, 15, 2, 34, 35)
ASSIGNEES = (("operator", "op-1"), ("operator", "op-2"), ("agent", "alice"), ("human", "bob"))
AGENTS = ("agent-a", "agent-b")
# Words of titles and posts. SEARCH_WORD is in about 1 % of threads (what `forum search
# --query` looks for in bench/scale.py); the others are common.
WORDS = [
    "build",
    "deploy",
    "timeout",
    "retry",
    "cache",
    "index",
    "migration",
    "schema",
    "queue",
    "worker",
    "lease",
    "flaky",
    "test",
    "branch",
    "merge",
    "review",
    "config",
    "secret",
    "token",
    "rollback",
    "release",
    "docker",
    "memory",
    "leak",
    "crash",
    "latency",
    "throughput",
    "backlog",
    "ticket",
    "agent",
    "operator",
    "guidance",
]
SEARCH_WORD = "kestrel"


@dataclass(frozen=True)
class Step:
    """One command to submit: its type, payload and who sends it."""

    command_type: str
    payload: dict[str, Any]
    actor_type: str
    actor_name: str


def sentence(rng: random.Random, n: int = 8) -> str:
    """``n`` words from :data:`WORDS`, now and then with :data:`SEARCH_WORD`."""
    words = rng.choices(WORDS, k=n)
    if rng.random() < 0.005:
        words[rng.randrange(n)] = SEARCH_WORD
    return " ".join(words)


def ticket_name(k: int) -> str:
    """Ticket number ``k``."""
    return f"TCK-{k}"


def thread_script(
    rng: random.Random, thread_id: str, ticket: str, run: tuple[str, str] | None
) -> list[Step]:
    """A forum thread's life: opened, posts, maybe assigned and re-prioritised, an ending."""
    opener = ("agent", f"agent-{rng.randrange(50)}") if rng.random() < 0.7 else ("human", "hana")
    payload: dict[str, Any] = {
        "thread_id": thread_id,
        "ticket": ticket,
        "title": sentence(rng, 5),
        "body": sentence(rng, 20),
        "priority": rng.choices(PRIORITIES, PRIORITY_WEIGHTS)[0],
    }
    if run is not None:
        payload["run_id"], payload["agent_name"] = run
    steps = [Step("open_thread", payload, *opener)]
    for k in range(rng.choice((0, 1, 1, 2, 3))):
        who = opener if k % 2 else ("operator", "op-1")
        steps.append(Step("add_post", {"thread_id": thread_id, "body": sentence(rng, 15)}, *who))
    if rng.random() < 0.4:
        kind, name = rng.choice(ASSIGNEES)
        assign = {"thread_id": thread_id, "assignee_type": kind, "assignee_name": name}
        steps.append(Step("assign_thread", assign, "operator", "op-1"))
    if rng.random() < 0.2:
        priority = {"thread_id": thread_id, "priority": rng.choice(PRIORITIES)}
        steps.append(Step("set_priority", priority, "operator", "op-1"))
    return steps + _ending(rng, thread_id)


def _ending(rng: random.Random, thread_id: str) -> list[Step]:
    ending = rng.choices(ENDINGS, ENDING_WEIGHTS)[0]

    def state(to: str) -> Step:
        return Step("change_state", {"thread_id": thread_id, "to_state": to}, "operator", "op-1")

    answer = Step("answer_thread", {"thread_id": thread_id, "body": sentence(rng)}, "human", "bob")
    close = Step("close_thread", {"thread_id": thread_id, "reason": "done"}, "operator", "op-1")
    if ending == "new":
        return []
    if ending in ("triaged", "waiting_operator", "waiting_human"):
        return [state(ending)]
    if ending == "answered":
        return [state("waiting_human"), answer] if rng.random() < 0.3 else [answer]
    return [answer, close] if rng.random() < 0.6 else [close]


def signal_step(run_id: str, agent: str, signal: dict[str, Any], actor: tuple[str, str]) -> Step:
    """A ``control_signal`` command for (run, agent)."""
    body = {"run_id": run_id, "agent_name": agent, **signal}
    payload = {"run_id": run_id, "agent_name": agent, "signal": body}
    return Step("control_signal", payload, *actor)


def _guidance_round(rng: random.Random, run_id: str, agent: str, answered: bool) -> list[Step]:
    ask = {"control_type": "guidance_request", "question": sentence(rng, 12)}
    steps = [signal_step(run_id, agent, ask, ("agent", agent))]
    if not answered:
        return steps
    if rng.random() < 0.5:
        answer = {"control_type": "guidance_answer", "answer": sentence(rng, 12)}
        steps.append(signal_step(run_id, agent, answer, ("operator", "op-1")))
    else:  # `forum answer` on the control thread: the product turns it into the answer signal
        thread = {"thread_id": control_thread_id(run_id, agent), "body": sentence(rng, 12)}
        steps.append(Step("answer_thread", thread, "operator", "op-2"))
    return steps


def run_script(rng: random.Random, run_id: str) -> list[Step]:
    """A run's control signals; the run stays active (no agent both completes and passes)."""
    a, b = AGENTS
    steps: list[Step] = []
    for _ in range(10 if rng.random() < 0.1 else 0):
        steps += _guidance_round(rng, run_id, a, answered=True)
    steps += _guidance_round(rng, run_id, a, answered=rng.random() < 0.8)
    steps.append(signal_step(run_id, a, {"control_type": "completion"}, ("agent", a)))
    status = "passed" if rng.random() < 0.6 else "failed"
    validation = {"control_type": "validation", "status": status, "done_criteria": "tests pass"}
    steps.append(signal_step(run_id, a, validation, ("agent", a)))
    if rng.random() < 0.3:
        steps += _guidance_round(rng, run_id, b, answered=False)
    else:
        steps.append(signal_step(run_id, b, {"control_type": "completion"}, ("agent", b)))
    return steps


def interleave(scripts: list[list[Step]]) -> list[Step]:
    """Round-robin over ``scripts``: step k of every script before step k+1 of any."""
    out: list[Step] = []
    depth = max((len(s) for s in scripts), default=0)
    for k in range(depth):
        out += [s[k] for s in scripts if k < len(s)]
    return out
