"""Building one scale dataset: the seeded plan (bench/scale_plan.py) applied through the
product's write path (bench/scale_pipeline.py), then counted for the manifest.

bench/scale_data.py caches what this builds; see its docstring for the content.
"""

from __future__ import annotations

import logging
import random
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, select

from bench.scale_pipeline import Pipeline, SimClock
from bench.scale_plan import (
    SEARCH_WORD,
    Step,
    interleave,
    run_script,
    sentence,
    thread_script,
    ticket_name,
)
from metawsm import __version__
from metawsm.messages.common import Actor
from metawsm.services.delivery import Delivery, deliver_command
from metawsm.services.escalation import raise_due
from metawsm.services.queries import mark_seen
from metawsm.services.runs import create_run
from metawsm.services.submit import make_command
from metawsm.settings import load_settings
from metawsm.storage import migrate
from metawsm.storage import models as m
from metawsm.storage.engine import build_engine

BUILDER_VERSION = 1  # bump when the content changes: cached stores of another version are rebuilt
START = datetime(2026, 9, 1, tzinfo=UTC)
SPAN = timedelta(days=30)  # the simulated activity is spread over this long
CHUNK = 200  # threads opened, then worked on, together
BIG_THREADS = (1_000, 10_000)
VIEWER = ("human", "hana")
DEAD_LETTERS = 20


def log(message: str) -> None:
    """A progress line on stderr."""
    print(f"[scale-data {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Shape:
    """What to build: forum threads, runs (two agents each), posts of the big threads, seed."""

    threads: int
    runs: int = 1_000
    big_threads: tuple[int, ...] = BIG_THREADS
    seed: int = 12

    def estimated_commands(self) -> int:
        """About how many commands the dataset takes (to spread the simulated clock)."""
        return self.threads * 4 + self.runs * 8 + sum(self.big_threads) + 1


# ------------------------------------------------------------------------------- building


class Builder:
    """Applies a :class:`Shape` to a migrated, empty database through :class:`Pipeline`."""

    def __init__(self, engine: Engine, shape: Shape) -> None:
        settings = load_settings(database_url=engine.url.render_as_string(hide_password=False))
        step_s = SPAN.total_seconds() / shape.estimated_commands()
        self.clock = SimClock(START, step_s)
        self.pipeline = Pipeline(engine, settings, self.clock)
        self.shape = shape
        self.rng = random.Random(shape.seed)
        self.tickets = max(20, shape.threads // 20)
        self.commands = 0
        self.started = time.monotonic()
        self.facts: dict[str, Any] = {"search_word": SEARCH_WORD}

    def build(self) -> dict[str, Any]:
        """Build everything; returns facts for the manifest (ids worth measuring, timings)."""
        run_ids = self._create_runs()
        big = self._open_big_threads()
        chunks = max(1, -(-self.shape.threads // CHUNK))
        for k in range(chunks):
            self._chunk(k, chunks, run_ids, big)
        self._dead_letters(run_ids)
        escalations = self._sla_pass()
        elapsed = time.monotonic() - self.started
        events = self.pipeline.events_projected
        self.facts |= {
            "run_ids_sample": run_ids[:10],
            "big_threads": {str(n): t for t, n in big.items()},
            "escalations_raised": escalations,
            "build_s": round(elapsed, 1),
            "commands_submitted": self.commands,
            "events_per_s": round(events / elapsed, 1) if elapsed else None,
            "outcomes": dict(self.pipeline.outcomes),
            "simulated_until": self.clock.now.isoformat(),
        }
        return self.facts

    def step(self, step: Step) -> None:
        """Submit one step's command and deliver everything it leads to."""
        command = make_command(
            step.command_type, step.payload, actor_type=step.actor_type, actor_name=step.actor_name
        )
        self.pipeline.run(command)
        self.commands += 1
        if self.commands % 5_000 == 0:
            self._progress()

    def _progress(self) -> None:
        elapsed = time.monotonic() - self.started
        events = self.pipeline.events_projected
        log(
            f"{self.commands} commands, {events} events in {elapsed:.0f} s"
            f" ({self.commands / elapsed:.0f} commands/s, {events / elapsed:.0f} events/s)"
        )

    def _create_runs(self) -> list[str]:
        operator = Actor(type="operator", name="op-1")
        run_ids = []
        for r in range(self.shape.runs):
            ticket = ticket_name(r % self.tickets)
            rt = self.pipeline.rt
            run_ids.append(
                create_run(
                    rt, tickets=[ticket], agents=["agent-a", "agent-b"], mode="run", brief=None,
                    actor=operator,
                )
            )  # fmt: skip
            self.pipeline.drain()
            self.clock.tick()
        log(f"{len(run_ids)} runs created")
        return run_ids

    def _open_big_threads(self) -> dict[str, int]:
        big = {}
        for n, posts in enumerate(self.shape.big_threads):
            thread_id = f"big-{posts}"
            payload = {"thread_id": thread_id, "ticket": ticket_name(n), "title": f"{posts} posts"}
            self.step(Step("open_thread", payload | {"body": sentence(self.rng)}, "human", "hana"))
            big[thread_id] = posts
        return big

    def _chunk(self, k: int, chunks: int, run_ids: list[str], big: dict[str, int]) -> None:
        """Threads of chunk ``k`` and their share of the runs' signals and big threads' posts."""
        rng, shape = self.rng, self.shape
        first, last = k * CHUNK, min(shape.threads, (k + 1) * CHUNK)
        scripts = []
        for i in range(first, last):
            run = None
            if rng.random() < 0.05:
                run = (run_ids[i % len(run_ids)], rng.choice(("agent-a", "agent-b")))
            scripts.append(thread_script(rng, f"th-{i}", ticket_name(i % self.tickets), run))
        share = slice(k * len(run_ids) // chunks, (k + 1) * len(run_ids) // chunks)
        scripts += [run_script(rng, run_id) for run_id in run_ids[share]]
        for thread_id, posts in big.items():
            n = (k + 1) * posts // chunks - k * posts // chunks
            body = {"thread_id": thread_id}
            scripts.append([Step("add_post", body | {"body": sentence(rng)}, "agent", "alice")] * n)
        for step in interleave(scripts):
            self.step(step)
        for i in range(first, last):
            if rng.random() < 0.3:
                mark_seen(self.pipeline.rt.engine, f"th-{i}", *VIEWER)

    def _dead_letters(self, run_ids: list[str]) -> None:
        """Command messages a worker dead-letters: invalid ones (naming a run), never accepted."""
        rt, bus = self.pipeline.rt, self.pipeline.bus
        topic = rt.topics.command("control_signal")
        logging.getLogger("metawsm.delivery").setLevel(logging.CRITICAL)  # expected: not news
        for n in range(DEAD_LETTERS):
            if n % 2 == 0:  # invalid: the signal is missing; the dead letter names the run
                raw: dict[str, Any] = {
                    "command_id": f"cmd-invalid-{n}",
                    "command_type": "control_signal",
                    "payload": {"run_id": run_ids[n % len(run_ids)], "agent_name": "agent-a"},
                }
            else:  # valid, but never submitted through metawsm (no ledger row)
                raw = make_command(
                    "add_post", {"thread_id": "th-0", "body": "x"}, actor_type="agent",
                    actor_name="stranger",
                ).model_dump(mode="json")  # fmt: skip
            result = deliver_command(rt, bus, raw, Delivery(str(raw["command_id"]), topic, False))
            assert result.dead, result
        log(f"{DEAD_LETTERS} dead letters")

    def _sla_pass(self) -> int:
        """The beat's SLA pass with the clock three hours past the last command."""
        self.clock.now += timedelta(hours=3)
        raised = raise_due(self.pipeline.rt, now=self.clock.now)
        self.pipeline.drain()
        log(f"SLA pass raised {raised} escalations")
        return raised


# -------------------------------------------------------------------------------- counting


def count_store(engine: Engine) -> dict[str, Any]:
    """What the store holds (the manifest's counts)."""
    view, run = m.ForumThreadView, m.Run
    with engine.connect() as conn:

        def n(stmt: Any) -> int:
            return int(conn.execute(stmt).scalar_one())

        def by(col: Any) -> dict[str, int]:
            return {
                str(k): int(v) for k, v in conn.execute(select(col, func.count()).group_by(col))
            }

        def by_state(conn: Any) -> dict[str, int]:
            rows = conn.execute(
                select(view.state, func.count())
                .where(view.is_control.is_(False))
                .group_by(view.state)
            )
            return {str(k): int(v) for k, v in rows}

        return {
            "threads": n(select(func.count()).where(view.is_control.is_(False))),
            "control_threads": n(select(func.count()).where(view.is_control.is_(True))),
            "threads_by_state": by_state(conn),
            "events": n(select(func.count()).select_from(m.ForumEvent)),
            "posts": n(select(func.count()).select_from(m.ForumPost)),
            "runs": n(select(func.count()).select_from(run)),
            "runs_by_status": by(run.status),
            "run_agents": n(select(func.count()).select_from(m.RunAgent)),
            "escalations": n(select(func.count()).select_from(m.ForumEscalation)),
            "dead_letters": n(select(func.count()).select_from(m.ForumDeadLetter)),
            "commands_by_status": by(m.ForumCommand.status),
            "outbox_by_status": by(m.ForumOutbox.status),
            "seen_marks": n(select(func.count()).select_from(m.ForumThreadRead)),
        }


def code_version() -> str:
    """The package version and the git commit of the code that built the store."""
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run(
        ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
    )
    return f"{__version__}+{done.stdout.strip() or 'unknown'}"


def build_store(url: str, shape: Shape) -> dict[str, Any]:
    """Migrate the empty database at ``url``, build ``shape`` into it, return its manifest."""
    engine = build_engine(load_settings(database_url=url))
    try:
        migrate.upgrade(engine)
        log(f"building {shape} into {migrate.masked_url(engine)}")
        facts = Builder(engine, shape).build()
        counts = count_store(engine)
        head = migrate.current_revision(engine)
    finally:
        engine.dispose()
    log(f"built: {counts['events']} events, {facts['events_per_s']} events/s")
    return {
        "builder_version": BUILDER_VERSION,
        "shape": asdict(shape),
        "counts": counts,
        "facts": facts,
        "code_version": code_version(),
        "migration_head": head,
        "built_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
