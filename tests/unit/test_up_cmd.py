"""``metawsm up``: process list, loopback rule, output prefixing, and the supervisor."""

from __future__ import annotations

import io
import os
import socket
import sys
import threading
from pathlib import Path

import pytest

from metawsm.cli import up_cmd
from metawsm.cli.up_checks import one_stack_per_database, ready_summary, require_free_port
from metawsm.cli.up_cmd import (
    ProcessSpec,
    Supervisor,
    ensure_broker,
    is_loopback,
    prefix_line,
    process_specs,
)
from metawsm.database_location import state_directory
from metawsm.errors import EXIT_UNREACHABLE, BrokerUnreachable, PortTaken, StackAlreadyRunning
from metawsm.settings import load_settings
from metawsm.transport.redis_server import wait_for


def test_the_stack_is_worker_beat_and_flower_run_by_this_python() -> None:
    specs = process_specs(3, 5556, python="/py")
    assert [s.name for s in specs] == ["worker", "beat", "flower"]
    assert specs[0].argv == (
        "/py", "-m", "metawsm", "worker", "--role", "all", "--concurrency", "3",
    )  # fmt: skip
    assert specs[1].argv == ("/py", "-m", "metawsm", "beat")
    assert specs[2].argv == ("/py", "-m", "metawsm", "flower", "--port", "5556")


def test_no_flower_port_leaves_flower_out() -> None:
    assert [s.name for s in process_specs(1, None)] == ["worker", "beat"]


@pytest.mark.parametrize("host", ["localhost", "LOCALHOST", "127.0.0.1", "127.0.1.1", "::1"])
def test_loopback_hosts_are_recognised(host: str) -> None:
    assert is_loopback(host)


@pytest.mark.parametrize("host", ["redis", "10.0.0.5", "example.com", "0.0.0.0", ""])
def test_other_hosts_are_not_loopback(host: str) -> None:
    assert not is_loopback(host)


def test_a_line_is_prefixed_with_the_padded_process_name() -> None:
    assert prefix_line("beat", 6, "tick\r\n") == "beat   | tick"
    assert prefix_line("worker", 6, "ready") == "worker | ready"


def test_a_remote_broker_that_does_not_answer_is_exit_3_with_the_password_masked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(up_cmd, "ping", lambda url, timeout_s: False)
    with pytest.raises(BrokerUnreachable) as caught:
        ensure_broker("redis://:hunter2@redis.example.com:6379/0", tmp_path)
    assert caught.value.exit_code == EXIT_UNREACHABLE
    assert "redis://:***@redis.example.com:6379/0" in str(caught.value)
    assert "hunter2" not in str(caught.value)


def test_a_tls_loopback_broker_is_not_replaced_by_a_private_one(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(up_cmd, "ping", lambda url, timeout_s: False)
    with pytest.raises(BrokerUnreachable, match="TLS"):
        ensure_broker("rediss://127.0.0.1:6390/0", tmp_path)


def python_spec(name: str, code: str) -> ProcessSpec:
    return ProcessSpec(name, (sys.executable, "-c", code))


def test_a_child_that_exits_stops_the_others_and_is_named() -> None:
    out = io.StringIO()
    supervisor = Supervisor(
        [
            python_spec("sleeper", "import time; time.sleep(60)"),
            python_spec("quitter", "print('bye', flush=True); raise SystemExit(7)"),
        ],
        out=out,
    )
    failure = supervisor.run()
    assert failure is not None
    assert "quitter" in failure
    assert "code 7" in failure
    assert "quitter | bye" in out.getvalue().splitlines()


def test_a_stop_request_ends_every_child_and_reports_no_failure() -> None:
    out = io.StringIO()
    supervisor = Supervisor(
        [python_spec("a", "print('up', flush=True); import time; time.sleep(60)")], out=out
    )
    started = threading.Timer(1.0, supervisor.request_stop)
    started.start()
    try:
        assert supervisor.run() is None
    finally:
        started.cancel()
    assert "a | up" in out.getvalue().splitlines()


def test_a_second_stack_on_the_same_database_is_refused_naming_the_first(tmp_path: Path) -> None:
    settings = load_settings(database_url=f"sqlite:///{tmp_path / 'm.db'}")
    with one_stack_per_database(settings):
        with pytest.raises(StackAlreadyRunning) as caught, one_stack_per_database(settings):
            pass
        assert f"pid {os.getpid()}" in str(caught.value)
        assert "m.db.up.lock" in str(caught.value)
    with one_stack_per_database(settings):  # released with the first
        pass


def test_a_taken_port_is_refused_naming_what_needs_it_and_the_option() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortTaken, match=f"port {port} .*Flower.*--flower-port"):
            require_free_port(port, "Flower", "--flower-port")
    require_free_port(port, "Flower", "--flower-port")  # free again


def test_the_ready_summary_names_every_part_and_masks_the_broker_password() -> None:
    settings = load_settings(
        database_url="sqlite:////x/m.db", broker_url="redis://:hunter2@127.0.0.1:6390/0"
    )
    lines = ready_summary(settings, 3.2, None, (5555, "ops:s3cret", False))
    text = "\n".join(lines)
    assert lines[0] == "ready in 3.2 s"
    assert "redis://:***@127.0.0.1:6390/0 (external: it answered)" in text
    assert "http://127.0.0.1:5555  user ops (password from METAWSM_FLOWER_BASIC_AUTH)" in text
    assert "hunter2" not in text and "s3cret" not in text
    assert "metawsm demo" in text
    generated = "\n".join(ready_summary(settings, 1.0, "private", (5555, "metawsm:abc", True)))
    assert "user metawsm, password abc (generated for this run" in generated


def test_the_supervisor_announces_ready_once_every_child_showed_it() -> None:
    out = io.StringIO()
    announced: list[float] = []
    code = "print('w1@h ready.', flush=True); print('w2@h ready.', flush=True);"
    code += " import time; time.sleep(60)"
    spec = ProcessSpec("w", (sys.executable, "-c", code), r"@\S+ ready\.", 2)
    supervisor = Supervisor([spec], out=out, on_ready=announced.append)
    stopper = threading.Thread(
        target=lambda: wait_for(lambda: bool(announced), 30) and supervisor.request_stop()
    )
    stopper.start()
    try:
        assert supervisor.run() is None
    finally:
        stopper.join(40)
    assert len(announced) == 1 and supervisor.not_ready() == []


def test_the_metrics_exporter_is_part_of_the_stack_when_given_a_port() -> None:
    specs = process_specs(1, None, python="/py", metrics_port=9809)
    assert [s.name for s in specs] == ["worker", "beat", "metrics"]
    assert specs[2].argv == ("/py", "-m", "metawsm", "metrics", "serve", "--port", "9809")
    assert specs[2].ready_port == 9809


def test_the_ready_summary_gives_the_metrics_url_and_never_its_password() -> None:
    settings = load_settings(database_url="sqlite:////x/m.db", metrics_basic_auth="ops:s3cret")
    text = "\n".join(ready_summary(settings, 1.0, None, None, 9808))
    assert "  metrics   http://127.0.0.1:9808/metrics  (basic auth from" in text
    assert "s3cret" not in text
    assert "metrics" not in "\n".join(ready_summary(settings, 1.0, None, None))


def test_a_taken_metrics_port_is_refused_naming_the_options() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(
            PortTaken, match=f"port {port} .*metrics.*--metrics-port or --no-metrics"
        ):
            require_free_port(port, "metrics", "--metrics-port or --no-metrics")


def test_the_stack_runs_the_api_on_its_port_and_the_summary_gives_its_url() -> None:
    specs = process_specs(1, None, python="/py", api_port=8711)
    api = specs[-1]
    assert (api.name, api.argv, api.ready_port) == (
        "api",
        ("/py", "-m", "metawsm", "api", "--port", "8711"),
        8711,
    )
    settings = load_settings(database_url="sqlite:///x.db")
    assert "http://127.0.0.1:8710/api/v1/" in "\n".join(
        ready_summary(settings, 1.0, None, None, None, 8710)
    )
    assert "api" not in [s.name for s in process_specs(1, None)]


def test_local_state_lives_beside_the_sqlite_database_wherever_the_stack_starts(
    tmp_path: Path,
) -> None:
    # Started from a subdirectory (or with METAWSM_DATABASE_URL elsewhere), `up` and `beat`
    # used ./.metawsm of the current directory: a second private Redis, a second schedule.
    elsewhere = tmp_path / "repo" / "sub"
    database = tmp_path / "repo" / ".metawsm" / "metawsm.db"
    assert state_directory(f"sqlite:///{database}", elsewhere) == database.parent
    assert state_directory(f"sqlite:///{database}?timeout=5", elsewhere) == database.parent
    server = "postgresql://u@db.example.com/metawsm"
    assert state_directory(server, elsewhere) == elsewhere / ".metawsm"
    assert state_directory("sqlite://", elsewhere) == elsewhere / ".metawsm"
