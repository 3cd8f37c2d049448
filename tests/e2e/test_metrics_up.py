"""The exporter and ``metawsm health`` against a running stack: ``metawsm up`` on a Redis of
this test, ``metawsm demo``, a scrape showing every catalogue metric with real values; health
turning unhealthy when Redis stops (naming ``broker``, within 10 s) and healthy when it is
back; the same when the worker stops (``workers:events`` and the other roles)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from metawsm.ops.catalogue import exposed_series_names
from metawsm.transport.redis_server import free_port
from tests.fixtures.conditions import wait_until
from tests.fixtures.redis import ControlledRedisServer

pytestmark = pytest.mark.e2e
UP_TIMEOUT_S = 90.0
UNHEALTHY_WITHIN_S = 10.0


def _env(broker_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METAWSM_")}
    env["METAWSM_BROKER_URL"] = broker_url
    return env


@contextmanager
def _stack(tmp_path: Path, env: dict[str, str], metrics: int) -> Iterator[subprocess.Popen[bytes]]:
    log = tmp_path / "up.log"
    argv = [sys.executable, "-m", "metawsm", "up", "--no-flower", "--no-api"]
    argv += ["--metrics-port", str(metrics)]
    with log.open("wb") as out:
        up = subprocess.Popen(
            argv, env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    try:

        def ready() -> bool:
            assert up.poll() is None, log.read_text(errors="replace")[-3000:]
            return "up: ready in " in log.read_text(errors="replace")

        wait_until(ready, UP_TIMEOUT_S, "the ready summary")
        text = log.read_text(errors="replace")
        assert f"up:   metrics   http://127.0.0.1:{metrics}/metrics  (no auth" in text
        yield up
    finally:
        os.killpg(up.pid, signal.SIGINT)
        code = up.wait(timeout=60)
        assert code == 0, log.read_text(errors="replace")[-3000:]


def _metawsm(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "metawsm", *args]
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def _health(env: dict[str, str], cwd: Path) -> tuple[int, dict[str, bool]]:
    done = _metawsm(env, cwd, "health", "--json")
    body = json.loads(done.stdout)
    assert body["healthy"] == (done.returncode == 0), done.stdout
    return done.returncode, {c["name"]: c["ok"] for c in body["checks"]}


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    return sum(v for (n, _), v in samples.items() if n == name)


def _unhealthy_within(
    env: dict[str, str], cwd: Path, check: str, timeout_s: float
) -> tuple[float, dict[str, bool]]:
    started = time.monotonic()
    found: dict[str, bool] = {}

    def failing() -> bool:
        code, checks = _health(env, cwd)
        found.update(checks)
        return code == 1 and not checks[check]

    wait_until(failing, timeout_s, f"health to fail {check}")
    return time.monotonic() - started, found


def test_after_the_demo_a_scrape_shows_every_metric_and_health_follows_redis_and_workers(
    tmp_path: Path, private_redis: ControlledRedisServer
) -> None:
    env, metrics = _env(private_redis.url), free_port()
    with _stack(tmp_path, env, metrics) as up:
        demo = _metawsm(env, tmp_path, "demo")
        assert demo.returncode == 0, demo.stdout + demo.stderr

        samples = _scrape(metrics)
        assert {name for name, _ in samples} == exposed_series_names()
        assert _total(samples, "metawsm_commands_accepted_total") > 0
        assert _total(samples, "metawsm_commands_applied_total") > 0
        assert samples[("metawsm_command_lag_seconds_count", ())] > 0
        assert samples[("metawsm_projection_lag_seconds_count", ())] > 0
        assert samples[("metawsm_guidance_answer_seconds_count", ())] >= 1
        assert samples[("metawsm_runs", (("status", "closed"),))] == 1
        for role in ("commands", "events", "integration", "housekeeping"):
            assert samples[("metawsm_workers_alive", (("role", role),))] >= 1, role
        assert samples[("metawsm_beat_last_tick_age_seconds", ())] < 10
        assert samples[("metawsm_broker_up", ())] == samples[("metawsm_database_up", ())] == 1
        assert samples[("metawsm_scrape_duration_seconds", ())] > 0

        wait_until(lambda: _health(env, tmp_path)[0] == 0, 30, "the stack healthy")

        private_redis.stop()
        took, checks = _unhealthy_within(env, tmp_path, "broker", UNHEALTHY_WITHIN_S)
        assert took < UNHEALTHY_WITHIN_S
        assert checks["database"] and checks["workers:events"]  # only the broker is named
        assert _scrape(metrics)[("metawsm_broker_up", ())] == 0
        private_redis.start()
        wait_until(lambda: _health(env, tmp_path)[0] == 0, 30, "healthy with Redis back")

        # Freeze the worker (its process group: the supervisor and its solo workers): its
        # heartbeats stop, as a SIGKILLed worker's would, and every role loses its consumer.
        worker = _child_pid(up.pid, "worker")
        os.killpg(worker, signal.SIGSTOP)
        try:
            took, checks = _unhealthy_within(env, tmp_path, "workers:events", UNHEALTHY_WITHIN_S)
            assert took < UNHEALTHY_WITHIN_S
            assert not checks["workers:commands"] and checks["broker"]
            assert _scrape(metrics)[("metawsm_workers_alive", (("role", "events"),))] == 0
        finally:
            os.killpg(worker, signal.SIGCONT)
        wait_until(lambda: _health(env, tmp_path)[0] == 0, 30, "healthy with the worker back")


def _child_pid(parent: int, command: str) -> int:
    """The pid of ``parent``'s child running ``metawsm <command>``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text().rpartition(")")[2].split()
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat[1]) == parent and command.encode() in argv:
            return int(entry.name)
    raise AssertionError(f"no child of {parent} runs metawsm {command}")
