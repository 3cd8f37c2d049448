"""Long-running processes: ``metawsm worker``, ``metawsm beat``, ``metawsm flower``.

Each checks that the database schema is at head, then replaces itself with the Celery process
(by module path: metawsm never imports the worker code).
"""

from __future__ import annotations

import logging
import os
import secrets
import sys

import click

from metawsm.bootstrap import topics_for
from metawsm.cli.context import AppContext, pass_app
from metawsm.storage.engine import build_engine
from metawsm.storage.schema_head import ensure_schema_at_head
from metawsm.transport.queues import queues_for_role
from metawsm.transport.worker_supervisor import WorkerSupervisor

APP_PATH = "workers.app:app"
ROLES = ["commands", "events", "integration", "housekeeping", "all"]


def _check_schema(app: AppContext) -> None:
    app.require_database()
    engine = build_engine(app.settings)
    try:
        ensure_schema_at_head(engine)
    finally:
        engine.dispose()


def _exec(args: list[str]) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, _celery_argv(args))


def worker_args(
    app: AppContext, role: str, concurrency: int, loglevel: str, pool: str, name: str = ""
) -> list[str]:
    """Celery worker arguments for ``role``: its queues, concurrency, pool, events on."""
    queues = queues_for_role(topics_for(app.settings), role)
    return [
        "worker",
        "-Q",
        ",".join(queues),
        "-c",
        str(concurrency),
        "-P",
        pool,
        "-l",
        loglevel,
        *(["-E"] if app.settings.task_events else []),
        "-n",
        name or f"{role}@%h",
        "--without-gossip",
        "--without-mingle",
    ]


def _celery_argv(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "celery", "-A", APP_PATH, *args]


def _run_solo_pool(app: AppContext, role: str, concurrency: int, loglevel: str) -> int:
    """Run ``concurrency`` supervised solo workers (transport.worker_supervisor) until stopped."""
    logging.basicConfig(
        level=getattr(logging, loglevel.upper(), logging.INFO),
        format="[%(asctime)s: %(levelname)s/solo-pool] %(message)s",
    )

    def argv_for(index: int) -> list[str]:
        name = f"{role}-{index + 1}@%h"
        return _celery_argv(worker_args(app, role, 1, loglevel, "solo", name))

    pool = WorkerSupervisor(argv_for, concurrency, hard_limit_s=app.settings.task_time_limit_s)
    return pool.run()


@click.command("worker")
@click.option("--role", type=click.Choice(ROLES), default="all", show_default=True)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 256),
    default=2,
    show_default=True,
    help="Tasks run at once: pool children (prefork) or supervised processes (solo).",
)
@click.option(
    "--pool",
    type=click.Choice(["solo", "prefork"]),
    default="solo",
    show_default=True,
    help="solo: supervised single-process workers (less CPU per task); prefork: Celery's pool.",
)
@click.option("--loglevel", default="INFO", show_default=True)
@pass_app
def worker(app: AppContext, role: str, concurrency: int, pool: str, loglevel: str) -> None:
    """Start a Celery worker on the queues of ROLE.

    Both pools enforce METAWSM_TASK_TIME_LIMIT_S (soft limit 10 s earlier). With --pool solo,
    this process supervises --concurrency single-process workers: it kills and replaces one whose
    task outlives the hard limit, and restarts one that dies. It exits 1 only when a worker
    cannot start (it exits before it is ready, 5 times in a row), naming why.

    \b
    Example:
      metawsm worker --role all --concurrency 2
    """
    _check_schema(app)
    if pool == "solo":
        sys.exit(_run_solo_pool(app, role, concurrency, loglevel))
    _exec(worker_args(app, role, concurrency, loglevel, pool))


@click.command("beat")
@click.option("--loglevel", default="INFO", show_default=True)
@pass_app
def beat(app: AppContext, loglevel: str) -> None:
    """Start the single beat: outbox drain, reconciliation, SLA escalation.

    Run exactly one; its jobs are safe even when two run.

    \b
    Example:
      metawsm beat --loglevel INFO
    """
    _check_schema(app)
    from metawsm.database_location import state_directory

    # Beside the database it serves, wherever beat is started from.
    state = state_directory(app.settings.database_url) / "celerybeat-schedule"
    state.parent.mkdir(parents=True, exist_ok=True)
    _exec(["beat", "-l", loglevel, "-s", str(state)])


@click.command("flower")
@click.option("--address", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=5555, show_default=True)
@pass_app
def flower(app: AppContext, address: str, port: int) -> None:
    """Start Flower (queue lag, failures) behind basic auth, on loopback by default.

    Credentials come from METAWSM_FLOWER_BASIC_AUTH (user:password); without it a password is
    generated and printed once on stderr.

    \b
    Example:
      metawsm flower --port 5555
    """
    auth = os.environ.get("METAWSM_FLOWER_BASIC_AUTH")
    if not auth:
        auth = f"metawsm:{secrets.token_urlsafe(12)}"
        click.echo(f"flower: basic auth {auth} (set METAWSM_FLOWER_BASIC_AUTH to choose)", err=True)
    os.environ["FLOWER_BASIC_AUTH"] = auth  # passed by environment, never on argv
    _exec(["flower", f"--address={address}", f"--port={port}"])
