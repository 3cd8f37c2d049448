"""The metric-name extraction that the dashboard and alert tests rely on."""

from __future__ import annotations

import pytest

from tests.fixtures.promql import grafana_to_promql, metric_names


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ('up{job="metawsm"} == 0', {"up"}),
        (
            "histogram_quantile(0.99, sum by (le)"
            ' (rate(metawsm_command_lag_seconds_bucket{job=~"$job"}[$__rate_interval])))',
            {"metawsm_command_lag_seconds_bucket"},
        ),
        (
            "sum(rate(a_total[5m])) by (command_type) / ignoring(x) group_left(y) b",
            {"a_total", "b"},
        ),
        ('(x{role="commands"} or on() (y == 1) * 0) == 0', {"x", "y"}),
        ("(sum(d) or vector(0)) > (sum(d offset 10m) or vector(0))", {"d"}),
        ("max_over_time(g[1h:5m]) > 1e3 and bool Inf < NaN - 0x1f", {"g"}),
        ('label_replace(m, "dst", "$1 by (x) {y}", "src", "(.*)")', {"m"}),
        ("sum without (instance) (n:recorded:rate5m)", {"n:recorded:rate5m"}),
        ("absent(up{job='metawsm'}) unless p @ end()", {"up", "p"}),
        ("count(q) BY (kind)", {"q"}),
        ('z{a="}"} + w[${__range}]', {"z", "w"}),
    ],
)
def test_metric_names_are_the_selected_series_only(expr: str, names: set[str]) -> None:
    assert metric_names(expr) == names


def test_an_unknown_metric_among_known_ones_is_reported() -> None:
    expr = "sum(rate(metawsm_commands_applied_total[5m])) / sum(rate(metawsm_typo_total[5m]))"
    assert metric_names(expr) == {"metawsm_commands_applied_total", "metawsm_typo_total"}


@pytest.mark.parametrize("expr", ['{__name__="metawsm_runs"}', "x{a='1'", "rate(x[5m)"])
def test_expressions_it_cannot_follow_are_refused(expr: str) -> None:
    with pytest.raises(ValueError):
        metric_names(expr)


def test_grafana_variables_are_replaced_as_grafana_does() -> None:
    expr = 'sum(rate(x{job=~"$job"}[$__rate_interval])) + y{job="${job}"}'
    assert grafana_to_promql(expr) == 'sum(rate(x{job=~"metawsm"}[1m])) + y{job="metawsm"}'
    with pytest.raises(KeyError):
        grafana_to_promql('x{a="$unknown"}')
