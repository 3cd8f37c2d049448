"""``forum ask`` on a running stack (process start → applied), for bench/scale.py ``--stack``.

Starts a private redis-server and a commands and an events worker (bench/pipeline.py's
``WorkerSet``, real ``metawsm worker`` processes) on the working copy, waits until a first
``forum ask`` is applied (the workers are up), then times ``n`` more as processes.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from bench.pipeline import WorkerSet
from bench.scale_measure import Sample, run_process
from metawsm.settings import load_settings
from metawsm.transport.redis_server import RedisServer

READY_TIMEOUT_S = 120.0


def ask_args(n: int) -> list[str]:
    """A ``forum ask`` that waits until its command is applied."""
    return [
        "forum", "ask", "--ticket", "TCK-1", "--title", f"scale ask {n}", "--body", "how fast?",
        "--wait", "applied", "--timeout", "30", "--json",
    ]  # fmt: skip


def ask_latency(url: str, n: int) -> Sample:
    """Median wall time of ``n`` ``forum ask`` processes against a stack on ``url``."""
    with (
        tempfile.TemporaryDirectory(prefix="metawsm-scale-stack-") as tmp,
        RedisServer(dir=Path(tmp) / "redis") as redis,
    ):
        settings = load_settings(database_url=url, broker_url=redis.url)
        env = {"METAWSM_DATABASE_URL": url, "METAWSM_BROKER_URL": redis.url}
        workers = WorkerSet(["commands", "events"], "solo", {"commands": 1, "events": 1})
        workers.start(settings, Path(tmp))
        try:
            _wait_ready(env, workers)
            return run_process(ask_args(1), env, n)
        finally:
            workers.stop()


def _wait_ready(env: dict[str, str], workers: WorkerSet) -> None:
    """Wait (with a deadline) until a first ask is applied: the workers consume."""
    deadline = time.monotonic() + READY_TIMEOUT_S
    while True:
        workers.check()
        if not run_process(ask_args(0), env, 1).error:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"no forum ask applied within {READY_TIMEOUT_S:g} s")
