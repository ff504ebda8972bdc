"""The Grafana dashboard imports into any Grafana: every datasource is the `datasource`
variable, every query reads only catalogued metrics of the chosen jobs and parses as PromQL,
and the variables, annotations and the export-for-sharing block are there. Provisioning points
at it. (No Grafana runs on the development machine: the JSON is checked instead.)"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tests.paths import ROOT
from tests.unit.dashboards.test_prometheus_rules import _promtool

GRAFANA = ROOT / "dashboards" / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "flashsale.json"
CATALOGUE = ROOT / "docs" / "metrics.md"
#: How every panel, query, variable and annotation names its datasource.
VARIABLE_DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
#: The selector every metric a query reads carries: the jobs chosen in the `job` variable.
JOB_MATCHER = 'job=~"$job"'


def _dashboard() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return loaded


def _exprs(dashboard: dict[str, Any]) -> list[str]:
    """The PromQL of every panel query and annotation."""
    panels = [t["expr"] for panel in dashboard["panels"] for t in panel["targets"]]
    return panels + [a["expr"] for a in dashboard["annotations"]["list"]]


def _catalogued() -> set[str]:
    """Every series name docs/metrics.md lists (a histogram's as Prometheus stores them)."""
    names = set()
    for name, kind in re.findall(
        r"^\| `(flashsale_[a-z0-9_]+)` \| (\w+)", CATALOGUE.read_text(), re.M
    ):
        names.add(name)
        if kind == "histogram":
            names |= {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    return names


def _datasources(node: Any) -> Iterator[Any]:
    """Every value of a `datasource` key anywhere in `node`."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "datasource":
                yield value
            yield from _datasources(value)
    elif isinstance(node, list):
        for item in node:
            yield from _datasources(item)


def _fixed_datasources(dashboard: dict[str, Any]) -> list[Any]:
    """The datasource references that are not the `datasource` variable (a fixed uid or name,
    or a datasource name written as a string)."""
    return [ref for ref in _datasources(dashboard) if ref != VARIABLE_DATASOURCE]


def _unselected(expr: str) -> list[str]:
    """The flashsale metrics `expr` reads without the job variable's matcher."""
    return [
        name
        for name, matchers in re.findall(r"\b(flashsale_[a-z0-9_]+)(\{[^}]*\})?", expr)
        if JOB_MATCHER not in matchers
    ]


def test_every_datasource_is_the_datasource_variable() -> None:
    dashboard = _dashboard()
    refs = list(_datasources(dashboard))
    targets = [t for panel in dashboard["panels"] for t in panel["targets"]]
    # Each panel, each of its queries, the job variable and each annotation name one.
    assert len(refs) == len(dashboard["panels"]) + len(targets) + 1 + 2
    assert _fixed_datasources(dashboard) == []
    # The only uid in the file is the dashboard's own.
    assert re.findall(r'"uid": "([^"]*)"', DASHBOARD.read_text()).count("flashsale-live") == 1
    assert set(re.findall(r'"uid": "([^"]*)"', DASHBOARD.read_text())) == {
        "flashsale-live",
        "${datasource}",
    }
    # The check bites: a panel pinned to one Grafana's datasource is caught.
    pinned = copy.deepcopy(dashboard)
    pinned["panels"][3]["targets"][0]["datasource"] = {"type": "prometheus", "uid": "P1809F7"}
    assert _fixed_datasources(pinned) == [{"type": "prometheus", "uid": "P1809F7"}]


def test_the_datasource_and_job_variables_exist() -> None:
    variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}
    assert set(variables) == {"datasource", "job"}
    source = variables["datasource"]
    assert (source["type"], source["query"], source["current"]) == ("datasource", "prometheus", {})
    job = variables["job"]
    assert job["type"] == "query"
    assert job["datasource"] == VARIABLE_DATASOURCE
    assert job["definition"] == job["query"]["query"] == "label_values(flashsale_run_info, job)"
    assert "flashsale_run_info" in _catalogued()
    assert job["multi"] and job["includeAll"]
    assert job["current"]["value"] == ["$__all"]


def test_every_query_reads_catalogued_metrics_of_the_chosen_jobs() -> None:
    dashboard = _dashboard()
    catalogued = _catalogued()
    exprs = _exprs(dashboard)
    assert len(exprs) >= 18
    for expr in exprs:
        named = set(re.findall(r"\bflashsale_[a-z0-9_]+", expr))
        assert named, expr
        assert named <= catalogued, (expr, named - catalogued)
        assert _unselected(expr) == [], expr
    # The check bites: a query that reads every job's series is caught.
    assert _unselected("sum(rate(flashsale_events_processed_total[1m]))") == [
        "flashsale_events_processed_total"
    ]


def test_every_query_parses_as_promql(tmp_path: Path) -> None:
    # promtool parses the expressions of recording rules: one rule per query, with Grafana's
    # `$__rate_interval` as Grafana would replace it (`$job` is a regular expression already).
    exprs = [e.replace("$__rate_interval", "20s") for e in _exprs(_dashboard())]
    rules = {
        "groups": [
            {
                "name": "grafana-queries",
                "rules": [{"record": f"check:query_{i}", "expr": e} for i, e in enumerate(exprs)],
            }
        ]
    }
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump(rules))
    assert f"{len(exprs)} rules found" in _promtool("check", "rules", str(path))


def test_annotations_mark_each_run_and_the_sell_outs() -> None:
    annotations = {a["name"]: a for a in _dashboard()["annotations"]["list"]}
    assert set(annotations) == {"Runs", "Sell-outs"}
    for annotation in annotations.values():
        assert annotation["datasource"] == VARIABLE_DATASOURCE
        assert annotation["enable"] is True
        assert not annotation["useValueForTime"]
    # A producer's series is 1 from its first sample to its last: Grafana joins the points of
    # a series less than a step apart into one region, from the run's start to its end.
    runs = annotations["Runs"]
    assert runs["expr"].startswith("flashsale_run_info{") and 'scenario!=""' in runs["expr"]
    assert "{{scenario}}" in runs["titleFormat"] and "{{seed}}" in runs["titleFormat"]
    # A sell-out: the counter went up within the step.
    sell_outs = annotations["Sell-outs"]
    assert "increase(flashsale_sell_outs_total{" in sell_outs["expr"]
    assert sell_outs["expr"].endswith("> 0")
    window = re.search(r"\[(\d+)s\]", sell_outs["expr"])
    assert window is not None and f"{window.group(1)}s" == sell_outs["step"]


def test_the_annotation_queries_find_the_run_and_its_sell_outs(tmp_path: Path) -> None:
    """Prometheus evaluates each annotation's query (`promtool test rules`) on a producer that
    emits from 10 s to 35 s, a worker up throughout, and a SKU selling out at 30 s: the
    run is found while its producer is up, the worker is no run, the sell-out is marked
    within a window of it."""
    annotations = {a["name"]: a for a in _dashboard()["annotations"]["list"]}
    # As Grafana sends them with every job chosen.
    runs, sell_outs = (annotations[n]["expr"].replace("$job", ".+") for n in ("Runs", "Sell-outs"))
    producer = 'job="flashsale-producer",instance="p:9100"'
    worker = 'job="flashsale-workers",instance="w:6066"'

    def found(expr: str, at_s: int, expected: bool) -> dict[str, Any]:
        samples = [{"value": 1}] if expected else []
        return {"expr": f"count({expr})", "eval_time": f"{at_s}s", "exp_samples": samples}

    cases = {
        "evaluation_interval": "5s",
        "tests": [
            {
                "interval": "5s",
                "input_series": [
                    {
                        "series": f'flashsale_run_info{{{producer},scenario="flash-drop",'
                        f'seed="11",version="0.1.0"}}',
                        "values": "_ _ 1x5 stale",
                    },
                    {"series": f'flashsale_run_info{{{worker},version="0.1.0"}}', "values": "1x20"},
                    {"series": f"flashsale_sell_outs_total{{{worker}}}", "values": "0x5 1x15"},
                ],
                "promql_expr_test": [
                    found(runs, 5, False),
                    found(runs, 10, True),
                    found(runs, 35, True),
                    found(runs, 45, False),
                    found(sell_outs, 25, False),
                    found(sell_outs, 30, True),
                    found(sell_outs, 55, True),
                    found(sell_outs, 65, False),
                ],
            }
        ],
    }
    path = tmp_path / "annotations_test.yml"
    path.write_text(yaml.safe_dump(cases))
    assert "SUCCESS" in _promtool("test", "rules", str(path))


def test_the_export_for_sharing_block_names_what_the_dashboard_needs() -> None:
    dashboard = _dashboard()
    # No input to fill in on import: the datasource is chosen in the dashboard itself
    # (a `${DS_...}` input is left unresolved by file provisioning).
    assert dashboard["__inputs"] == []
    assert dashboard["id"] is None
    assert "${DS_" not in DASHBOARD.read_text()
    requires = {(r["type"], r["id"]): r for r in dashboard["__requires"]}
    panel_types = {p["type"] for p in dashboard["panels"]}
    assert {i for t, i in requires if t == "panel"} == panel_types
    assert ("datasource", "prometheus") in requires
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    image = compose["services"]["grafana"]["image"]
    assert image == f"grafana/grafana:{requires['grafana', 'grafana']['version']}"


def test_grafana_provisioning_points_at_the_dashboard_and_prometheus() -> None:
    datasource = yaml.safe_load((GRAFANA / "provisioning/datasources/prometheus.yml").read_text())
    (source,) = datasource["datasources"]
    assert source["type"] == "prometheus"
    # The `datasource` variable starts on Grafana's default datasource of its type.
    assert source["isDefault"] is True
    variables = {v["name"]: v for v in _dashboard()["templating"]["list"]}
    assert variables["datasource"]["query"] == source["type"]
    provider = yaml.safe_load((GRAFANA / "provisioning/dashboards/flashsale.yml").read_text())
    (files,) = provider["providers"]
    assert files["type"] == "file"
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    grafana = compose["services"]["grafana"]
    mounted = {v.split(":")[0]: v.split(":")[1] for v in grafana["volumes"]}
    assert (
        mounted["./dashboards/grafana/dashboards"]
        == grafana["environment"]["FLASHSALE_GRAFANA_DASHBOARDS"]
    )
    assert "${FLASHSALE_GRAFANA_DASHBOARDS" in files["options"]["path"]
