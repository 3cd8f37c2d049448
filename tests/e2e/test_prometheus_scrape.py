"""A real Prometheus scrapes the exporter of a running stack, and its HTTP API reads back what
the stack did: the Procfile's worker roles and beat, ``metawsm metrics serve`` (with basic auth)
on the same database, and ``prometheus`` (Debian's package) scraping it every second."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from metawsm.transport.redis_server import free_port
from tests.e2e.test_stack import Stack, metawsm_env
from tests.fixtures.prometheus import PrometheusServer, running_prometheus
from tests.fixtures.promql import dashboard_queries, grafana_to_promql

SCRAPED_TIMEOUT_S = 60.0  # exporter start-up, then a scrape every second
# The stack's start, five CLI commands and Prometheus' start on a busy two-core machine.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]
BASIC_AUTH = ("prometheus", "scrape-secret")
ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "ops" / "grafana" / "metawsm.json"
RULES = ROOT / "ops" / "prometheus" / "metawsm-alerts.yml"
EXPORTER = ("-m", "metawsm", "metrics", "serve", "--address", "127.0.0.1")


@pytest.fixture
def stack(sqlite_url: str, redis_url: str, tmp_path: Path) -> Iterator[Stack]:
    """The worker roles and beat on a migrated SQLite file and the session's Redis."""
    env = metawsm_env(sqlite_url, redis_url)
    env["METAWSM_METRICS_BASIC_AUTH"] = ":".join(BASIC_AUTH)
    built = Stack(env=env, cwd=tmp_path)
    try:
        yield built
    finally:
        built.stop()


@pytest.fixture
def exporter_port(stack: Stack) -> Iterator[int]:
    """``metawsm metrics serve`` on a free port against the stack's database and broker."""
    port = free_port()
    with open(stack.cwd / "metrics.log", "wb") as log:
        stack.procs["metrics"] = subprocess.Popen(
            [sys.executable, *EXPORTER, "--port", str(port)],
            env=stack.env, cwd=stack.cwd, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    yield port  # the stack fixture stops it with the other processes


def _submit(stack: Stack) -> tuple[int, int]:
    """Open two threads and answer and close one, then break a rule once: (applied, rejected)."""
    ask = ["forum", "ask", "--ticket", "TCK-1", "--title", "Build fails", "--body", "why?"]
    outcomes = [stack.json(*ask), stack.json(*ask, "--thread-id", "t-2")]
    thread = outcomes[0]["thread_id"]
    outcomes.append(stack.json("forum", "answer", "--thread-id", thread, "--body", "retry"))
    outcomes.append(stack.json("forum", "close", "--thread-id", thread, "--reason", "done"))
    assert [o["status"] for o in outcomes] == ["applied"] * 4, outcomes
    refused = stack.cli("forum", "state", "--thread-id", thread, "--state", "triaged")
    assert refused.returncode == 1, refused.stdout + refused.stderr
    return len(outcomes), 1


def _until_value(stack: Stack, prometheus: PrometheusServer, expr: str, expected: float) -> None:
    def seen() -> bool:
        prometheus.check_alive()
        return prometheus.value(expr) == expected

    try:
        stack.until(seen, SCRAPED_TIMEOUT_S, f"{expr} == {expected} in Prometheus")
    except AssertionError as exc:
        raise AssertionError(
            f"{exc}; last value {prometheus.value(expr)}; targets {prometheus.targets()};\n"
            f"exporter log:\n{(stack.cwd / 'metrics.log').read_text(errors='replace')[-2000:]}"
        ) from None


def _every_query_evaluates(prometheus: PrometheusServer) -> None:
    """Each dashboard query and alert expression runs on the real server without an error."""
    queries = list(dashboard_queries(json.loads(DASHBOARD.read_text())))
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        queries += [(f"alert {rule['alert']}", rule["expr"]) for rule in group["rules"]]
    for where, expr in queries:
        try:
            prometheus.query(grafana_to_promql(expr))
        except AssertionError as exc:
            raise AssertionError(f"{where}: {exc}") from None


def test_prometheus_reads_the_stacks_counts_through_the_exporter(
    stack: Stack, exporter_port: int, tmp_path: Path
) -> None:
    stack.start()
    applied, rejected = _submit(stack)
    target = f"127.0.0.1:{exporter_port}"
    with running_prometheus(tmp_path / "prometheus", target, BASIC_AUTH) as prometheus:
        _until_value(stack, prometheus, 'up{job="metawsm"}', 1)
        _until_value(stack, prometheus, "sum(metawsm_commands_applied_total)", applied)
        _until_value(stack, prometheus, "sum(metawsm_commands_rejected_total)", rejected)
        _until_value(
            stack, prometheus, 'metawsm_commands_applied_total{command_type="open_thread"}', 2
        )
        _until_value(stack, prometheus, "metawsm_broker_up", 1)
        _until_value(stack, prometheus, "metawsm_database_up", 1)
        # A live worker in each role (the stack runs each at concurrency 1).
        for role in ("commands", "events", "integration", "housekeeping"):
            _until_value(stack, prometheus, f'metawsm_workers_alive{{role="{role}"}}', 1)
        _every_query_evaluates(prometheus)
        (scraped,) = prometheus.targets()
        assert (scraped["health"], scraped["labels"]["instance"]) == ("up", target), scraped
