"""deploy/monitoring/grafana-dashboard.json: every query reads metrics the gateway exports,
and the panels operators look for are there, per pod."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tests.promql import exported_names, metric_names

DASHBOARD = (
    Path(__file__).resolve().parent.parent / "deploy" / "monitoring" / "grafana-dashboard.json"
)

Object = dict[str, Any]


def dashboard() -> Object:
    loaded: Object = json.loads(DASHBOARD.read_text())
    return loaded


def panels() -> Iterator[Object]:
    for panel in dashboard()["panels"]:
        yield panel
        yield from panel.get("panels", [])  # a collapsed row holds its panels


def queries() -> Iterator[tuple[str, str]]:
    """(where, query) for every panel target and every query variable."""
    for panel in panels():
        for target in panel.get("targets", []):
            yield f"panel {panel['title']!r} {target['refId']}", target["expr"]
    for variable in dashboard()["templating"]["list"]:
        if variable["type"] == "query":
            yield f"variable {variable['name']}", variable["query"]["query"]


def test_every_query_reads_only_metrics_the_gateway_exports() -> None:
    exported = exported_names()
    found = list(queries())
    assert len(found) > 10
    for where, query in found:
        names = metric_names(query)
        assert names, f"{where}: no metric in {query!r}"
        assert names <= exported, f"{where}: {names - exported} not exported by the gateway"


def test_the_panels_operators_look_for_are_there_per_pod() -> None:
    read = {name for _, query in queries() for name in metric_names(query)}
    assert {
        "gateway_open_streams",
        "gateway_events_sent_total",
        "gateway_publish_to_send_seconds_bucket",
        "gateway_resets_sent_total",
        "gateway_errors_total",  # kind="at_capacity": streams shed
        "gateway_slow_client_disconnects_total",
        "gateway_consumers_open",
    } <= read
    kinds = {panel["type"] for panel in panels()}
    assert "heatmap" in kinds, "the lag histogram"
    per_pod = [panel["title"] for panel in panels() if "per pod" in panel["title"]]
    assert len(per_pod) >= 3
    for panel in panels():
        for target in panel.get("targets", []):
            if "per pod" in panel["title"]:
                assert "by (pod" in target["expr"], panel["title"]


def test_queries_follow_the_namespace_and_pod_variables() -> None:
    variables = {v["name"] for v in dashboard()["templating"]["list"]}
    assert {"datasource", "namespace", "pod"} <= variables
    for where, query in queries():
        if where.startswith("panel"):
            assert 'namespace="$namespace"' in query, where
            assert 'pod=~"$pod"' in query, where


def test_panels_have_unique_ids_and_do_not_overlap() -> None:
    ids = [panel["id"] for panel in panels()]
    assert len(ids) == len(set(ids))
    taken: set[tuple[int, int]] = set()
    for panel in panels():
        box = panel["gridPos"]
        assert box["x"] + box["w"] <= 24, panel["title"]
        cells = {
            (x, y)
            for x in range(box["x"], box["x"] + box["w"])
            for y in range(box["y"], box["y"] + box["h"])
        }
        assert not cells & taken, f"{panel['title']} overlaps another panel"
        taken |= cells
