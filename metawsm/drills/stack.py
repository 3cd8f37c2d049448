"""A drill's scratch stack: private Redis, scratch database, real worker and beat processes.

Nothing of it outlives the drill: :func:`scratch_stack` stops every process, drops the
PostgreSQL database it created and removes its temporary directory on the way out, whether the
drill ended, failed or was interrupted.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from metawsm.bootstrap import Container, build
from metawsm.drills.procs import Child
from metawsm.errors import DrillAborted, MetawsmError
from metawsm.services.submit import make_command, submit, wait_for_outcome
from metawsm.settings import Settings, load_settings
from metawsm.storage import migrate
from metawsm.storage.engine import build_engine
from metawsm.storage.scratch import postgres_scratch_database
from metawsm.transport.redis_faults import ControlledRedisServer

# Beat's safety net at drill speed, so a drill settles within its short form (production
# defaults: drain every 5 s, re-drive after 60 s). Everything else is the production default.
DRILL_TIMINGS: dict[str, float] = {
    "drain_interval_s": 1.0,
    "outbox_redrive_age_s": 5.0,
    "outbox_lease_s": 5.0,
    "retry_backoff_base_s": 0.2,
    "retry_backoff_cap_s": 2.0,
}
READY_TIMEOUT_S = 90.0  # cold interpreters on a busy two-core machine
WORKER_CONCURRENCY = 2


@dataclass
class Stack:
    """The running scratch stack a drill drives and breaks."""

    workdir: Path
    settings: Settings
    redis: ControlledRedisServer
    container: Container  # the drill's own composition root (the CLI's: submit, reads)
    worker: Child
    beat: Child

    def wait_ready(self, timeout_s: float = READY_TIMEOUT_S) -> None:
        """Wait until a worker applies a probe command (its queues are consumed).

        Raises:
            DrillAborted: the probe had no outcome within ``timeout_s`` seconds, or a process
                exited (its log tail is in the message).
        """
        probe = make_command(
            "open_thread",
            {"thread_id": f"probe-{uuid.uuid4().hex[:8]}", "ticket": "DRILL", "title": "probe",
             "body": "is a worker consuming?"},
            actor_type="operator", actor_name="drill",
        )  # fmt: skip
        submit(self.container.runtime, probe)
        try:
            wait_for_outcome(self.container.engine, probe.command_id, timeout_s)
        except MetawsmError as exc:
            raise self.aborted(f"no worker applied a probe command: {exc}") from exc
        for child in (self.worker, self.beat):
            if child.pid is None:
                raise self.aborted(f"{child.name} exited at start")

    def aborted(self, why: str) -> DrillAborted:
        """A :class:`DrillAborted` naming ``why``, with the tail of each process's log."""
        tails = "\n".join(
            f"--- {child.name} ({child.log_path.name}):\n{child.log_tail()}"
            for child in (self.worker, self.beat)
        )
        return DrillAborted(f"drill aborted: {why}\n{tails}")


@contextmanager
def scratch_stack(
    database_server: str | None = None, logs_dir: Path | None = None
) -> Iterator[Stack]:
    """Start a scratch stack (on a new database of ``database_server`` when given, else a
    SQLite file in a temporary directory), ready to take commands; tear it all down after,
    copying the logs of worker, beat and Redis into ``logs_dir`` first when given.

    Raises:
        DrillAborted: a part did not start (see :meth:`Stack.wait_ready`).
    """
    with ExitStack() as cleanup:
        workdir = Path(tempfile.mkdtemp(prefix="metawsm-drill-"))
        cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)
        if logs_dir is not None:
            cleanup.callback(_keep_logs, workdir, logs_dir)  # after every process stopped
        redis = ControlledRedisServer(dir=workdir / "redis", appendonly=False)
        cleanup.callback(redis.stop)
        redis.start()
        database_url = cleanup.enter_context(scratch_database(database_server, workdir))
        settings = load_settings(database_url=database_url, broker_url=redis.url, **DRILL_TIMINGS)
        _migrate(settings)
        container = build(settings)
        cleanup.callback(container.close)
        worker = Child("worker", _worker_args(), settings, workdir)
        beat = Child("beat", ["beat", "--loglevel", "INFO"], settings, workdir)
        for child in (worker, beat):
            cleanup.callback(child.stop)  # registered first: stopped even if start fails
            child.start()
        stack = Stack(workdir, settings, redis, container, worker, beat)
        stack.wait_ready()
        yield stack


def _keep_logs(workdir: Path, logs_dir: Path) -> None:
    logs_dir.mkdir(parents=True, exist_ok=True)
    for log in [*workdir.glob("*.log"), workdir / "redis" / "redis.log"]:
        if log.exists():
            shutil.copy2(log, logs_dir / log.name)


def _worker_args() -> list[str]:
    # The production pool (solo workers under their supervisor) at the production log level.
    return [
        "worker", "--role", "all", "--pool", "solo",
        "--concurrency", str(WORKER_CONCURRENCY), "--loglevel", "INFO",
    ]  # fmt: skip


def _migrate(settings: Settings) -> None:
    engine = build_engine(settings)
    try:
        migrate.upgrade(engine)
    finally:
        engine.dispose()


@contextmanager
def scratch_database(server_url: str | None, workdir: Path) -> Iterator[str]:
    """A new, empty database: a SQLite file in ``workdir``, or a uniquely named database on the
    PostgreSQL server ``server_url``, dropped afterwards; yields its URL."""
    if server_url is None:
        yield f"sqlite:///{workdir / 'drill.db'}"
        return
    with postgres_scratch_database(server_url, "metawsm_drill") as url:
        yield url
