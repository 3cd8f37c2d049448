"""The Grafana dashboard (ops/grafana/metawsm.json): every query names a metric the exporter
exposes, every metric of the catalogue is on a panel, and it imports into any Grafana."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType
from typing import Any

from metawsm.ops import catalogue
from tests.fixtures.prometheus import promtool
from tests.fixtures.promql import dashboard_queries, grafana_to_promql, metric_names, panels

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "ops" / "grafana" / "metawsm.json"
BUILDER = ROOT / "ops" / "grafana" / "build_dashboard.py"
# Series Prometheus adds to every scrape that the dashboard may use besides the catalogue.
PROMETHEUS_SERIES = frozenset({"up"})
# Catalogue metrics deliberately on no panel, with the reason. None today.
EXEMPT_FROM_PANELS: dict[str, str] = {}
UNITS = {"s", "ops", "short", "none"}
HISTOGRAM_SUFFIXES = ("_bucket", "_sum", "_count")  # the series of a histogram, by the contract


def _dashboard() -> dict[str, Any]:
    return json.loads(DASHBOARD.read_text())


def unknown_metrics(dashboard: dict[str, Any]) -> dict[str, set[str]]:
    """Per query, the metric names it uses that no scrape exposes."""
    known = catalogue.exposed_series_names() | PROMETHEUS_SERIES
    unknown = {}
    for where, expr in dashboard_queries(dashboard):
        names = metric_names(expr)
        assert names, f"{where} selects no metric: {expr}"
        if names - known:
            unknown[where] = names - known
    return unknown


def _base_name(series: str) -> str:
    histograms = {m.name for m in catalogue.METRICS if m.kind == "histogram"}
    for suffix in HISTOGRAM_SUFFIXES:
        if series.endswith(suffix) and series.removesuffix(suffix) in histograms:
            return series.removesuffix(suffix)
    return series


def test_every_dashboard_query_names_a_metric_the_exporter_exposes() -> None:
    assert unknown_metrics(_dashboard()) == {}


def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    # promtool parses rule expressions: each query becomes a recording rule.
    queries = list(dashboard_queries(_dashboard()))
    rules = [
        {"record": f"dashboard:query_{n}", "expr": grafana_to_promql(expr)}
        for n, (_, expr) in enumerate(queries)
    ]
    (tmp_path / "dashboard.rules.yml").write_text(
        json.dumps({"groups": [{"name": "dashboard", "rules": rules}]})
    )
    result = promtool("check", "rules", "dashboard.rules.yml", cwd=tmp_path)
    names = "\n".join(f"dashboard:query_{n} is {where}" for n, (where, _) in enumerate(queries))
    assert result.returncode == 0, f"{result.stdout}{result.stderr}{names}"
    assert f"SUCCESS: {len(rules)} rules found" in result.stdout


def test_a_query_naming_an_unknown_metric_is_caught() -> None:
    dashboard = _dashboard()
    target = next(p for p in panels(dashboard) if p.get("targets"))["targets"][0]
    target["expr"] += " + metawsm_not_exposed_total"
    found = unknown_metrics(dashboard)
    assert list(found.values()) == [{"metawsm_not_exposed_total"}]


def test_every_catalogue_metric_is_shown_on_some_panel() -> None:
    shown = {
        _base_name(name)
        for panel in panels(_dashboard())
        for target in panel.get("targets", [])
        for name in metric_names(target["expr"])
    }
    wanted = {m.name for m in catalogue.METRICS} - set(EXEMPT_FROM_PANELS)
    assert sorted(wanted - shown) == []
    assert set(EXEMPT_FROM_PANELS) <= {m.name for m in catalogue.METRICS}


def test_the_dashboard_imports_anywhere_with_a_prometheus_datasource_variable() -> None:
    dashboard = _dashboard()
    assert dashboard["schemaVersion"] >= 36
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    for panel in panels(dashboard):
        sources = [panel.get("datasource")] + [t["datasource"] for t in panel.get("targets", [])]
        for source in filter(None, sources):
            assert source == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
    assert "__inputs" not in dashboard  # no datasource bound at export time


def test_panels_have_units_unique_ids_and_rows() -> None:
    dashboard = _dashboard()
    every = list(panels(dashboard))
    assert len({p["id"] for p in every}) == len(every)
    rows = [p["title"] for p in every if p["type"] == "row"]
    assert len(rows) >= 5
    for panel in every:
        if panel["type"] != "row":
            assert panel["fieldConfig"]["defaults"]["unit"] in UNITS, panel["title"]
            box = panel["gridPos"]
            assert box["x"] + box["w"] <= 24, panel["title"]


def test_rates_are_shown_per_second_and_lags_in_seconds() -> None:
    for panel in panels(_dashboard()):
        exprs = [t["expr"] for t in panel.get("targets", [])]
        unit = panel.get("fieldConfig", {}).get("defaults", {}).get("unit")
        if exprs and all(
            e.startswith(("sum by (command_type) (rate(", "sum(rate(")) for e in exprs
        ):
            assert unit == "ops", panel["title"]
        if any("histogram_quantile" in e or "_seconds" in e for e in exprs):
            assert unit == "s", panel["title"]


def _builder() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_dashboard", BUILDER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_json_is_what_the_builder_writes() -> None:
    assert DASHBOARD.read_text() == _builder().render(), (
        "run: python ops/grafana/build_dashboard.py"
    )
