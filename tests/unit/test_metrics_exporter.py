"""The exporter's exposition, its catalogue and docs, the health verdicts and the server's auth."""

from __future__ import annotations

import base64
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from metawsm.ops import catalogue as m
from metawsm.ops.counters import BUCKET, SUM, observe
from metawsm.ops.exporter import render
from metawsm.ops.health import CHECK_NAMES, judge
from metawsm.ops.readings import Readings
from metawsm.ops.server import MetricsApp, make_server
from metawsm.settings import load_settings
from metawsm.storage.schema_head import HEAD
from metawsm.transport.broker_probe import BrokerProbe

DOCS = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
UP = BrokerProbe(True, 0.4)


def _readings(**fields: object) -> Readings:
    r = Readings(broker=UP, schema_revisions=(HEAD,))
    for key, value in fields.items():
        setattr(r, key, value)
    return r


def _counters(*incs: object) -> dict[tuple[str, str], float]:
    out: dict[tuple[str, str], float] = {}
    for inc in incs:
        key = (inc.name, inc.labels)  # type: ignore[attr-defined]
        out[key] = out.get(key, 0.0) + inc.value  # type: ignore[attr-defined]
    return out


def test_the_exposition_parses_and_holds_every_catalogue_family_with_its_kind() -> None:
    counters = _counters(*observe(m.COMMAND_LAG, 0.2), *observe(m.COMMAND_LAG, 7.0))
    counters[(m.COMMANDS_APPLIED, 'command_type="open_thread"')] = 3.0
    text = render(_readings(counters=counters, runs={"running": 2}, workers_alive={"events": 1}))
    families = {f.name: f for f in text_string_to_metric_families(text)}
    for spec in m.METRICS:
        family_name = spec.name.removesuffix("_total") if spec.kind == "counter" else spec.name
        assert families[family_name].type == spec.kind, spec.name
        assert families[family_name].samples, spec.name
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for f in families.values()
        for s in f.samples
    }
    assert samples[(m.COMMANDS_APPLIED, (("command_type", "open_thread"),))] == 3
    assert samples[(m.COMMANDS_APPLIED, (("command_type", "add_post"),))] == 0
    assert samples[(f"{m.COMMAND_LAG}_bucket", (("le", "0.1"),))] == 0
    assert samples[(f"{m.COMMAND_LAG}_bucket", (("le", "0.25"),))] == 1
    assert samples[(f"{m.COMMAND_LAG}_bucket", (("le", "10.0"),))] == 2
    assert samples[(f"{m.COMMAND_LAG}_bucket", (("le", "+Inf"),))] == 2
    assert samples[(f"{m.COMMAND_LAG}_count", ())] == 2
    assert samples[(f"{m.COMMAND_LAG}_sum", ())] == pytest.approx(7.2)
    assert samples[(m.RUNS, (("status", "running"),))] == 2
    assert samples[(m.RUNS, (("status", "closed"),))] == 0
    assert samples[(m.WORKERS_ALIVE, (("role", "events"),))] == 1
    assert samples[(m.BEAT_TICK_AGE, ())] == float("inf")
    assert samples[(m.DATABASE_UP, ())] == 1


def test_a_sample_name_is_one_the_catalogue_lists_and_every_listed_one_is_there() -> None:
    text = render(_readings())
    names = {
        s.name
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name.startswith("metawsm_")
    }
    assert names == m.exposed_series_names()


def test_without_the_database_only_the_probes_are_exposed() -> None:
    r = Readings(broker=BrokerProbe(False, 1000.0, "redis://x: refused"), database_error="down")
    text = render(r)
    names = {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert names == {m.DATABASE_UP: 0, m.BROKER_UP: 0, m.SCRAPE_DURATION: 0}


def test_label_values_are_escaped() -> None:
    counters = {(m.DEAD_LETTERS, ""): 0.0}
    text = render(_readings(counters=counters, dead_letters={'we"ird\\kind\n': 2}))
    family = next(f for f in text_string_to_metric_families(text) if f.name == m.DEAD_LETTERS)
    assert {s.labels["kind"]: s.value for s in family.samples}['we"ird\\kind\n'] == 2


def test_an_observation_lands_in_the_first_bucket_that_holds_it() -> None:
    bucket, total = observe(m.PROJECTION_LAG, 0.05)
    assert (bucket.name, bucket.labels, bucket.value) == (
        m.PROJECTION_LAG + BUCKET,
        'le="0.05"',
        1.0,
    )
    assert (total.name, total.value) == (m.PROJECTION_LAG + SUM, 0.05)
    assert observe(m.GUIDANCE_ANSWER, 10**6)[0].labels == 'le="+Inf"'
    assert observe(m.COMMAND_LAG, -3)[1].value == 0.0  # clock skew is not a negative lag


def _doc_table() -> set[tuple[str, str, tuple[str, ...]]]:
    text = DOCS.read_text()
    section = text.split("## Every metric", 1)[1].split("\n## ", 1)[0]
    rows = set()
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not cells[0].startswith("`metawsm_"):
            continue
        labels = tuple(re.findall(r"`([a-z_]+)`", cells[2]))
        rows.add((cells[0].strip("`"), cells[1], labels))
    return rows


def test_the_docs_table_lists_exactly_the_catalogue() -> None:
    assert _doc_table() == {(s.name, s.kind, s.labels) for s in m.METRICS}


def test_counters_end_in_total_and_names_carry_the_prefix() -> None:
    for spec in m.METRICS:
        assert spec.name.startswith("metawsm_")
        assert spec.name.endswith("_total") == (spec.kind == "counter"), spec.name


def test_health_names_every_contract_check_and_hints_at_the_fix() -> None:
    settings = load_settings()
    healthy = judge(
        _readings(
            workers_alive=dict.fromkeys(("commands", "events", "integration", "housekeeping"), 1),
            beat_age_s=1.0,
        ),
        settings,
    )
    assert [c.name for c in healthy.checks] == list(CHECK_NAMES)
    assert healthy.healthy, healthy.failing()
    sick = judge(
        _readings(
            broker=BrokerProbe(False, 1001.0, "redis://127.0.0.1:1/0: refused"),
            workers_alive={"commands": 1, "events": 0, "integration": 1, "housekeeping": 1},
            beat_age_s=settings.liveness_s + 1,
            projection_oldest_age_s=settings.health_projection_max_lag_s + 1,
            projection_backlog=7,
            dead_letters={"command": 1},
        ),
        settings,
    )
    failing = {c.name: c.hint for c in sick.failing()}
    assert failing == {
        "broker": failing["broker"],
        "workers:events": "metawsm worker --role events",
        "beat": "metawsm beat",
        "projection": "metawsm worker --role events",
        "dead_letters": "metawsm dlq list",
    }
    assert sick.as_dict()["healthy"] is False
    assert "1001 ms" in next(c.detail for c in sick.checks if c.name == "broker")


def test_health_of_a_database_behind_head_says_upgrade() -> None:
    r = Readings(broker=UP, schema_revisions=("0003",))
    result = judge(r, load_settings())
    schema = next(c for c in result.checks if c.name == "schema")
    assert (schema.ok, schema.hint) == (False, "metawsm db upgrade")
    assert "0003" in schema.detail


@pytest.fixture
def served() -> Iterator[str]:
    settings = load_settings(metrics_basic_auth="ops:s3cret")
    app = MetricsApp(None, settings, reader=lambda: _readings())  # type: ignore[arg-type]
    server = make_server(app, "127.0.0.1", 0)
    import threading

    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _get(url: str, auth: str | None = None) -> tuple[int, dict[str, str], bytes]:
    request = urllib.request.Request(url)
    if auth is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(auth.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_basic_auth_guards_metrics_and_readyz_but_not_healthz(served: str) -> None:
    status, headers, _ = _get(served + "/metrics")
    assert status == 401 and headers["WWW-Authenticate"].startswith("Basic realm=")
    assert _get(served + "/metrics", "ops:wrong")[0] == 401
    assert _get(served + "/readyz", "ops:s3cret2")[0] == 401
    status, headers, body = _get(served + "/metrics", "ops:s3cret")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert b"metawsm_database_up 1" in body
    status, _, body = _get(served + "/readyz", "ops:s3cret")
    assert status == 503  # no worker or beat in these readings
    assert json.loads(body)["healthy"] is False
    assert _get(served + "/healthz") == (200, _get(served + "/healthz")[1], b"ok\n")
    assert _get(served + "/nope", "ops:s3cret")[0] == 404


def test_metrics_basic_auth_must_be_user_colon_password_and_is_masked() -> None:
    from metawsm.errors import ConfigError

    with pytest.raises(ConfigError, match="METAWSM_METRICS_BASIC_AUTH"):
        load_settings(metrics_basic_auth="no-colon")
    shown = json.dumps(load_settings(metrics_basic_auth="ops:s3cret").masked(), default=str)
    assert "s3cret" not in shown
