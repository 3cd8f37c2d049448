"""``metawsm up`` on a fresh directory: the ready summary, ``metawsm demo`` against it, a second
stack on the same database refused, one on another database but the same broker refused, and
Ctrl-C stopping everything (the private Redis too)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from metawsm.transport.redis_server import free_port, ping
from tests.fixtures.conditions import wait_until

UP_TIMEOUT_S = 90.0


def _env(broker_url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("METAWSM_")}
    env["METAWSM_BROKER_URL"] = broker_url
    return env


def _metawsm(env: dict[str, str], cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "metawsm", *args]
    return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=120)


def test_up_prints_a_ready_summary_runs_the_demo_and_refuses_a_second_stack(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    broker = f"redis://127.0.0.1:{free_port()}/0"  # nothing there: up starts a private Redis
    env, flower, api = _env(broker), free_port(), free_port()
    log = tmp_path / "up.log"
    with log.open("wb") as out:
        up = subprocess.Popen(
            [sys.executable, "-m", "metawsm", "up", "--flower-port", str(flower),
             "--metrics-port", str(free_port()), "--api-port", str(api)],
            env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:

        def ready() -> bool:
            assert up.poll() is None, log.read_text(errors="replace")[-3000:]
            return "up: ready in " in log.read_text(errors="replace")

        wait_until(ready, UP_TIMEOUT_S, "the ready summary")
        text = log.read_text(errors="replace")
        db = tmp_path / ".metawsm" / "metawsm.db"
        assert f"up:   database  sqlite:///{db}" in text
        assert f"up:   broker    {broker} (private redis-server, pid " in text
        assert f"up:   flower    http://127.0.0.1:{flower}  user metawsm, password " in text
        assert f"up:   api       http://127.0.0.1:{api}/api/v1/" in text
        assert f"up:   board     http://127.0.0.1:{api}/  (sign in" in text
        served = f"http://127.0.0.1:{api}/api/v1"
        assert httpx.get(f"{served}/readiness", timeout=10).json()["ready"] is True
        assert httpx.get(f"{served}/runs", timeout=10).status_code == 401
        signin = httpx.get(f"http://127.0.0.1:{api}/", timeout=10, follow_redirects=True)
        assert signin.status_code == 200 and 'name="token"' in signin.text  # the board's
        assert "up:   try       metawsm demo" in text

        demo = _metawsm(env, tmp_path, "demo")
        assert demo.returncode == 0, demo.stdout + demo.stderr
        assert "demo complete: run " in demo.stdout

        second = _metawsm(env, tmp_path, "up", "--flower-port", str(free_port()), "--no-metrics",
                         "--no-api")  # fmt: skip
        assert second.returncode == 1
        assert f"a metawsm stack already runs on sqlite:///{db} (metawsm up, pid {up.pid}" in (
            second.stderr
        )
        # Not below tmp_path: from there, the stack's database would be found (walking up).
        other = tmp_path_factory.mktemp("other")
        taken = _metawsm(env, other, "up", "--flower-port", str(flower), "--no-metrics", "--no-api")
        assert taken.returncode == 1
        assert f"port {flower} on 127.0.0.1 (Flower) is taken" in taken.stderr
        # Another database on the same broker and queues: its workers would consume this
        # stack's messages. Refused before any of its processes starts.
        shared = _metawsm(env, other, "up", "--flower-port", str(free_port()), "--no-metrics",
                          "--no-api")  # fmt: skip
        assert shared.returncode == 1, shared.stderr
        assert f"are used by another metawsm stack, on sqlite:///{db}" in shared.stderr
        assert " | " not in shared.stderr  # no child of its started: none printed a line
    finally:
        os.killpg(up.pid, signal.SIGINT)
        code = up.wait(timeout=60)
    assert code == 0, log.read_text(errors="replace")[-3000:]
    assert not ping(broker, 0.5)  # the private Redis went with it
