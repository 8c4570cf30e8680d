"""deploy/gateway-api (Gateway API with Envoy Gateway, instead of ingress-nginx), rendered
with `kubectl kustomize` and checked offline. The CRDs' schemas are not available here:
the Kubernetes objects are validated, the Gateway API and Envoy objects checked by shape
and against the overlays' Service, Ingress host and the gateway's heartbeat."""

from __future__ import annotations

import re
import subprocess

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml

from tests.manifests import DEPLOY, Object, gateway_settings, named
from tests.servers import BIN

GATEWAY_API = "gateway.networking.k8s.io/v1"
ENVOY = "gateway.envoyproxy.io/v1alpha1"


def rendered() -> dict[str, Object]:
    result = subprocess.run(
        [str(BIN / "kubectl"), "kustomize", str(DEPLOY / "gateway-api")],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    docs = [doc for doc in yaml.safe_load_all(result.stdout) if doc]
    return {doc["kind"]: doc for doc in docs}


def seconds(duration: str) -> float:
    """A Gateway API / Envoy duration ("3600s", "1h", "0s")."""
    match = re.fullmatch(r"(\d+)(ms|s|m|h)", duration)
    assert match is not None, duration
    return int(match[1]) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[match[2]]


def test_the_route_sends_everything_to_the_gateway_service_with_no_request_timeout() -> None:
    objects = rendered()
    gateway, route = objects["Gateway"], objects["HTTPRoute"]
    assert gateway["apiVersion"] == route["apiVersion"] == GATEWAY_API
    (listener,) = gateway["spec"]["listeners"]
    assert listener["protocol"] == "HTTPS"
    assert listener["tls"]["certificateRefs"] == [{"kind": "Secret", "name": "prices-tls"}]
    assert route["spec"]["parentRefs"] == [
        {"name": gateway["metadata"]["name"], "sectionName": listener["name"]}
    ]
    ingress = named("prod", "Ingress", "gateway")
    host = ingress["spec"]["rules"][0]["host"]
    assert route["spec"]["hostnames"] == [host] == [listener["hostname"]]
    (rule,) = route["spec"]["rules"]
    assert rule["matches"] == [{"path": {"type": "PathPrefix", "value": "/"}}]
    service = named("prod", "Service", "gateway")
    (port,) = service["spec"]["ports"]
    assert rule["backendRefs"] == [{"name": service["metadata"]["name"], "port": port["port"]}]
    # Envoy's default request timeout is 15 s: an event stream would end every 15 s.
    assert rule["timeouts"] == {"request": "0s", "backendRequest": "0s"}


def test_envoy_keeps_idle_event_streams_open_and_retries_a_503(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    heartbeat = gateway_settings("prod", monkeypatch).heartbeat
    objects = rendered()
    client, backend = objects["ClientTrafficPolicy"], objects["BackendTrafficPolicy"]
    assert client["apiVersion"] == backend["apiVersion"] == ENVOY
    assert client["spec"]["targetRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "prices"}
    ]
    assert backend["spec"]["targetRefs"] == [
        {"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "name": "gateway"}
    ]
    assert seconds(client["spec"]["timeout"]["http"]["idleTimeout"]) >= 10 * heartbeat
    assert seconds(backend["spec"]["timeout"]["http"]["connectionIdleTimeout"]) >= 10 * heartbeat
    assert 503 in backend["spec"]["retry"]["retryOn"]["httpStatusCodes"]


def test_the_network_policy_admits_envoy_to_the_gateway_port(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    policy = rendered()["NetworkPolicy"]
    kubernetes_validate.validate(policy, kubernetes_validate.latest_version(), strict=True)
    (rule,) = policy["spec"]["ingress"]
    assert [p["port"] for p in rule["ports"]] == [gateway_settings("prod", monkeypatch).port]
    assert (
        policy["spec"]["podSelector"]
        == named("prod", "NetworkPolicy", "gateway")["spec"]["podSelector"]
    )
