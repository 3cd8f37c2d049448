"""What an idle stack shows of its housekeeping: task events (Flower's task list) and log lines.

    PYTHONPATH=. python bench/housekeeping_noise.py [--duration 60] [--json]

Starts a private redis-server, a migrated scratch SQLite database, `metawsm worker --role all
--concurrency 1` and `metawsm beat`, both at --loglevel INFO with the default intervals (drain
5 s, reconciliation 30 s, SLA pass 30 s), and a Celery event receiver (what Flower listens to).
After the processes are up it submits one forum command (so the counts also show what a
command costs), then idles for --duration seconds and prints task events by task name and log
lines by process, split into housekeeping and the rest.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `python bench/...`

from bench.pipeline import scratch_database
from metawsm.bootstrap import build
from metawsm.services.submit import make_command, submit
from metawsm.settings import load_settings
from metawsm.storage import migrate
from metawsm.storage.engine import build_engine
from metawsm.transport.queues import HOUSEKEEPING_TASKS
from metawsm.transport.redis_server import RedisServer
from tests.fixtures.workers import client_app, worker_environment


def _start(args: list[str], env: dict[str, str], cwd: Path, name: str) -> subprocess.Popen[bytes]:
    with (cwd / f"{name}.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "metawsm", *args],
            env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


def _count_lines(path: Path) -> dict[str, int]:
    runs = [m for t in HOUSEKEEPING_TASKS for m in (f"{t}[", f"({t})")]
    counts: Counter[str] = Counter()
    for line in path.read_text(errors="replace").splitlines():
        if " INFO/" not in line:
            continue
        counts["housekeeping" if any(m in line for m in runs) else "other"] += 1
    return dict(counts)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the idle stack for --duration seconds and print what it showed."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=60.0)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    events: Counter[str] = Counter()

    def on_event(event: dict[str, Any]) -> None:
        if str(event.get("type", "")) in ("task-sent", "task-received") and event.get("name"):
            kind = "housekeeping" if event["name"] in HOUSEKEEPING_TASKS else "other"
            events[f"{kind} {event['type']}"] += 1

    with ExitStack() as es:
        tmp = Path(es.enter_context(tempfile.TemporaryDirectory(prefix="metawsm-noise-")))
        redis = es.enter_context(RedisServer(dir=tmp / "redis"))
        url = es.enter_context(scratch_database("sqlite", tmp))
        settings = load_settings(database_url=url, broker_url=redis.url)
        engine = build_engine(settings)
        migrate.upgrade(engine)
        engine.dispose()
        env = worker_environment(settings)
        monitor = client_app(settings)
        conn = es.enter_context(monitor.connection_for_read())
        receiver = monitor.events.Receiver(conn, handlers={"*": on_event})
        listener = threading.Thread(
            target=receiver.capture, kwargs={"limit": None, "wakeup": False}, daemon=True
        )
        listener.start()
        procs = {
            "worker": _start(
                ["worker", "--role", "all", "--concurrency", "1", "--loglevel", "INFO"],
                env,
                tmp,
                "worker",
            ),
            "beat": _start(["beat", "--loglevel", "INFO"], env, tmp, "beat"),
        }
        try:
            c = build(settings)
            command = make_command(
                "open_thread",
                {"thread_id": "t-1", "ticket": "T-1", "title": "t", "body": "b"},
                actor_type="agent", actor_name="bench",
            )  # fmt: skip
            submit(c.runtime, command)
            c.close()
            time.sleep(args.duration)  # the measurement window itself, not a synchronisation
        finally:
            for proc in procs.values():
                proc.terminate()
            for proc in procs.values():
                proc.wait(timeout=20)
            receiver.should_stop = True
            listener.join(10)
        lines = {name: _count_lines(tmp / f"{name}.log") for name in procs}
    report = {"duration_s": args.duration, "task_events": dict(events), "info_lines": lines}
    if args.json:
        print(json.dumps(report))
    else:
        print(f"idle {args.duration:g} s after one forum command:")
        print(f"  task events heard (Flower): {dict(sorted(events.items()))}")
        for name, counts in lines.items():
            print(f"  {name} INFO lines: {counts}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
