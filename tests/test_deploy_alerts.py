"""deploy/monitoring/prometheusrule.yaml: valid for promtool, each alert unit-tested by
`promtool test rules`, reading metrics that exist, with thresholds that match the stream."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.promql import exported_names, metric_names

ROOT = Path(__file__).resolve().parent.parent
MONITORING = ROOT / "deploy" / "monitoring"
RULE = MONITORING / "prometheusrule.yaml"
UNIT_TESTS = MONITORING / "alerts.test.yaml"
RULES_FILE = "price-gateway.rules.yaml"  # the name alerts.test.yaml loads
# Read from elsewhere than the gateway: the scrape itself, kube-state-metrics, and
# prometheus-nats-exporter (the group price-gateway-nats).
FOREIGN_METRICS = {"up", "kube_pod_status_ready"}
NATS_GROUP = "price-gateway-nats"

Object = dict[str, Any]


def promtool() -> str:
    found = shutil.which("promtool")
    if found:
        return found
    if os.environ.get("CI"):
        pytest.fail("promtool missing in CI: .ci/run installs Debian's prometheus package")
    pytest.skip("no promtool: apt-get install -y prometheus (CI installs it)")


def spec() -> Object:
    rule: Object = yaml.safe_load(RULE.read_text())
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    assert rule["kind"] == "PrometheusRule"
    groups: Object = rule["spec"]
    return groups


def rules() -> list[tuple[str, Object]]:
    return [(group["name"], rule) for group in spec()["groups"] for rule in group["rules"]]


def run_promtool(*args: str, cwd: Path) -> str:
    result = subprocess.run(
        [promtool(), *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout


def test_rules_pass_promtool_check(tmp_path: Path) -> None:
    (tmp_path / RULES_FILE).write_text(yaml.safe_dump(spec()))
    out = run_promtool("check", "rules", RULES_FILE, cwd=tmp_path)
    assert f"SUCCESS: {len(rules())} rules found" in out


def test_alerts_pass_their_promtool_unit_tests(tmp_path: Path) -> None:
    groups = spec()
    # The descriptions are static prose; leaving them out keeps the unit tests to what the
    # rules compute (labels, summaries with their values).
    for group in groups["groups"]:
        for rule in group["rules"]:
            rule.get("annotations", {}).pop("description", None)
    (tmp_path / RULES_FILE).write_text(yaml.safe_dump(groups))
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    run_promtool("test", "rules", UNIT_TESTS.name, cwd=tmp_path)


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    cases = [
        case
        for test in yaml.safe_load(UNIT_TESTS.read_text())["tests"]
        for case in test.get("alert_rule_test", [])
    ]
    for _, rule in rules():
        name = rule["alert"]
        outcomes = [bool(case["exp_alerts"]) for case in cases if case["alertname"] == name]
        assert True in outcomes, f"{name}: no unit test where it fires"
        assert False in outcomes, f"{name}: no unit test where it stays quiet"


def test_the_alerts_the_operators_asked_for_are_there() -> None:
    names = {rule["alert"] for _, rule in rules()}
    assert {
        "PriceGatewayDown",
        "PriceGatewayNotReady",
        "PriceGatewayLagHigh",
        "PriceGatewayShedding",
        "PriceGatewayConsumersNearLimit",
        "PriceStreamConsumersNearLimit",
        "NatsJetStreamApiErrors",
        "PriceGatewayNatsUnavailable",
        "PriceGatewaySlowClientCutOffs",
    } <= names
    for _, rule in rules():
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]


def test_gateway_alerts_read_only_metrics_the_gateway_exports() -> None:
    exported = exported_names()
    for group, rule in rules():
        if group == NATS_GROUP:
            continue
        names = metric_names(rule["expr"])
        assert names, rule["alert"]
        unknown = names - exported - FOREIGN_METRICS
        assert not unknown, f"{rule['alert']} reads {unknown}, which the gateway does not export"


def test_consumer_alerts_fire_at_80_percent_of_the_streams_max_consumers() -> None:
    base = yaml.safe_load((ROOT / "deploy" / "base" / "kustomization.yaml").read_text())
    (stream,) = [g for g in base["configMapGenerator"] if g["name"] == "price-stream"]
    literals = dict(line.split("=", 1) for line in stream["literals"])
    limit = int(literals["STREAM_MAX_CONSUMERS"])
    for name in ("PriceGatewayConsumersNearLimit", "PriceStreamConsumersNearLimit"):
        (rule,) = [rule for _, rule in rules() if rule["alert"] == name]
        threshold = re.search(r">\s*(\d+)\s*$", rule["expr"])
        assert threshold is not None, rule["expr"]
        assert int(threshold[1]) == limit * 8 // 10, name
    (nats_rule,) = [r for _, r in rules() if r["alert"] == "PriceStreamConsumersNearLimit"]
    assert f'stream_name="{literals["STREAM_NAME"]}"' in nats_rule["expr"]


def test_monitoring_renders_with_a_scrape_job_named_as_the_alerts_expect() -> None:
    kubectl = Path(sys.executable).parent / "kubectl"
    result = subprocess.run(
        [str(kubectl), "kustomize", str(MONITORING)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    objects = {doc["kind"]: doc for doc in yaml.safe_load_all(result.stdout) if doc}
    assert set(objects) == {"PrometheusRule", "ServiceMonitor", "ConfigMap"}
    base = list(yaml.safe_load_all((ROOT / "deploy" / "base" / "gateway.yaml").read_text()))
    monitor = objects["ServiceMonitor"]["spec"]
    selector = monitor["selector"]["matchLabels"].items()
    # It selects the ops Service alone (the ops port; the main one answers 404 for /metrics).
    (service,) = [
        o for o in base if o["kind"] == "Service" and selector <= o["metadata"]["labels"].items()
    ]
    assert service["metadata"]["name"] == "gateway-ops"
    (endpoint,) = monitor["endpoints"]
    assert endpoint["port"] in {port["name"] for port in service["spec"]["ports"]}
    (deployment,) = [o for o in base if o["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    ports = {port["name"]: port["containerPort"] for port in container["ports"]}
    (target,) = [port["targetPort"] for port in service["spec"]["ports"]]
    assert target == "ops"
    assert ports["ops"] != ports["http"]
    # The operator names the job after the Service unless jobLabel names one of its labels:
    # job="gateway" in every gateway alert.
    assert service["metadata"]["labels"][monitor["jobLabel"]] == "gateway"
    for _, rule in rules():
        jobs = set(re.findall(r'job="([^"]+)"', rule["expr"]))
        assert jobs <= {"gateway"}, rule["alert"]
    dashboard = objects["ConfigMap"]
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert (
        dashboard["data"]["price-gateway.json"]
        == (MONITORING / "grafana-dashboard.json").read_text()
    )
