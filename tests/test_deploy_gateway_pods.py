"""The gateway's Deployment against the gateway's code: probes, ports, the drain, scaling,
resources and the ingress; and every variable the manifests set is a documented setting
with a valid value."""

from __future__ import annotations

import pytest
from starlette.applications import Starlette
from starlette.routing import Route

from gateway.app import build_app
from gateway.server import server_config
from gateway.settings import Settings
from publisher.settings import PublisherSettings
from tests.manifests import (
    DEPLOY,
    OVERLAYS,
    component,
    config_map,
    containers,
    documented_variables,
    environment,
    gateway_settings,
    load_settings,
    named,
    objects,
    probe_seconds,
    quantity,
)

# uvicorn's own shutdown margin is in gateway.server; this is on top of it, for the last
# consumer deletes and the NATS drain.
GRACE_MARGIN = 5

# Read by uvicorn itself, not a gateway setting: the proxies whose X-Forwarded-For it trusts.
OTHER_VARIABLES = {"gateway": {"FORWARDED_ALLOW_IPS"}}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_hit_routes_the_gateway_serves(overlay: str) -> None:
    routes = {r.path for r in build_app(Settings()).routes if isinstance(r, Route)}
    (deployment,) = component(overlay, "gateway")
    (container,) = containers(deployment)
    paths = {
        kind: container[kind]["httpGet"]["path"]
        for kind in ("readinessProbe", "livenessProbe", "startupProbe")
    }
    assert paths["readinessProbe"] == "/readyz"
    assert paths["livenessProbe"] == "/healthz"
    assert set(paths.values()) <= routes
    scraped = deployment["spec"]["template"]["metadata"]["annotations"]["prometheus.io/path"]
    assert scraped in routes


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ports_agree_with_the_gateways_port_settings(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Probes and scrapes on the ops port; the Service, Ingress and the ingress controller's
    network path on the main port alone (the main port answers 404 for the ops routes)."""
    settings = gateway_settings(overlay, monkeypatch)
    assert settings.host == "0.0.0.0"
    assert settings.ops_port not in (0, settings.port)
    (deployment,) = component(overlay, "gateway")
    (container,) = containers(deployment)
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": settings.port, "ops": settings.ops_port}
    for kind in ("readinessProbe", "livenessProbe", "startupProbe"):
        assert container[kind]["httpGet"]["port"] in ("ops", settings.ops_port)
    annotations = deployment["spec"]["template"]["metadata"]["annotations"]
    assert annotations["prometheus.io/port"] == str(settings.ops_port)
    service = named(overlay, "Service", "gateway")
    (service_port,) = service["spec"]["ports"]
    assert service_port["targetPort"] in ("http", settings.port)
    ops = named(overlay, "Service", "gateway-ops")
    assert [p["targetPort"] for p in ops["spec"]["ports"]] == ["ops"]
    assert ops["spec"]["clusterIP"] == "None"  # no virtual address another object could route to
    backend = named(overlay, "Ingress", "gateway")["spec"]["rules"][0]["http"]["paths"][0]
    assert backend["backend"]["service"] == {"name": "gateway", "port": {"name": "http"}}
    policy = named(overlay, "NetworkPolicy", "gateway")["spec"]["ingress"]
    by_port = {tuple(p["port"] for p in rule["ports"]): rule["from"] for rule in policy}
    assert set(by_port) == {(settings.port,), (settings.ops_port,)}
    (scraper,) = by_port[(settings.ops_port,)]
    assert scraper["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": "monitoring"
    }


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_grace_period_covers_prestop_and_the_whole_drain(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = gateway_settings(overlay, monkeypatch)
    (deployment,) = component(overlay, "gateway")
    (container,) = containers(deployment)
    pre_stop = probe_seconds(container["lifecycle"]["preStop"])
    assert pre_stop > 0, "a pause so the endpoint leaves the Service before the drain"
    # uvicorn waits this long for the drained streams before cancelling what is left.
    shutdown = server_config(settings, Starlette()).timeout_graceful_shutdown
    assert shutdown is not None
    assert shutdown >= settings.drain_period
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= pre_stop + shutdown + GRACE_MARGIN, (grace, pre_stop, shutdown)
    # Streams re-home before the NATS consumer of a SIGKILLed pod would be reaped anyway.
    assert settings.inactive_threshold >= 5


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_scales_and_spreads_for_long_lived_connections(overlay: str) -> None:
    (deployment,) = component(overlay, "gateway")
    spec = deployment["spec"]
    assert spec["strategy"]["rollingUpdate"]["maxUnavailable"] == 0
    keys = {c["topologyKey"] for c in spec["template"]["spec"]["topologySpreadConstraints"]}
    assert "kubernetes.io/hostname" in keys
    assert named(overlay, "PodDisruptionBudget", "gateway")["spec"]["maxUnavailable"] == 1
    (container,) = containers(deployment)
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind])
    if overlay == "prod":
        hpa = named(overlay, "HorizontalPodAutoscaler", "gateway")["spec"]
        assert hpa["scaleTargetRef"]["name"] == "gateway"
        assert 2 <= hpa["minReplicas"] < hpa["maxReplicas"]
        streams, cpu = hpa["metrics"]
        assert cpu["resource"]["name"] == "cpu"
        assert streams["type"] == "Pods"
        down = hpa["behavior"]["scaleDown"]
        assert down["stabilizationWindowSeconds"] >= 300
        assert down["policies"] == [{"type": "Pods", "value": 1, "periodSeconds": 300}]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_replica_count_where_an_autoscaler_owns_it(overlay: str) -> None:
    """`kubectl apply` would reset the autoscaler's count to the manifest's at every apply."""
    for hpa in objects(overlay, "HorizontalPodAutoscaler"):
        target = hpa["spec"]["scaleTargetRef"]
        scaled = named(overlay, target["kind"], target["name"])
        assert "replicas" not in scaled["spec"], f"{overlay}: {target['name']} sets replicas"
    assert objects("prod", "HorizontalPodAutoscaler"), "prod scales the gateway"


def test_the_autoscaler_scales_on_open_streams_per_pod_first_then_cpu(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Idle streams cost memory and file descriptors, not CPU: pods could be full (503) at
    60 % CPU. The gauge the gateway exports, averaged per pod, well under its limit."""
    settings = gateway_settings("prod", monkeypatch)
    streams, cpu = named("prod", "HorizontalPodAutoscaler", "gateway")["spec"]["metrics"]
    assert streams["type"] == "Pods"
    assert streams["pods"]["metric"] == {"name": "gateway_open_streams"}
    target = streams["pods"]["target"]
    assert target["type"] == "AverageValue"
    assert 0 < int(target["averageValue"]) <= settings.max_connections // 2
    assert (cpu["type"], cpu["resource"]["name"]) == ("Resource", "cpu")
    # The metric exists under this name (gateway/ exports it) and the README says what
    # the adapter needs to serve it.
    readme = (DEPLOY / "README.md").read_text()
    assert "seriesQuery: 'gateway_open_streams" in readme
    assert "custom.metrics.k8s.io" in readme


# JetStream memory consumers live on the NATS server's Go heap, not in max_memory_store:
# measured 26 MB per 1,000, up to 43 MB per 1,000 during a reconnect storm.
STORM_BYTES_PER_CONSUMER = 43_000


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_and_nats_are_guaranteed_and_spread_only_over_usable_nodes(overlay: str) -> None:
    for workload in (*component(overlay, "gateway"), named(overlay, "StatefulSet", "nats")):
        name = workload["metadata"]["name"]
        for container in containers(workload):
            resources = container["resources"]
            assert resources["requests"] == resources["limits"], f"{name}: Guaranteed QoS"
        for spread in workload["spec"]["template"]["spec"].get("topologySpreadConstraints", []):
            if spread["whenUnsatisfiable"] == "DoNotSchedule":
                # Else tainted nodes count as empty domains and pods stay Pending.
                assert spread.get("nodeTaintsPolicy") == "Honor", name


def test_prod_nats_memory_holds_every_consumer_of_a_reconnect_storm() -> None:
    nats = named("prod", "StatefulSet", "nats")
    (container,) = containers(nats)
    env = {v["name"]: v.get("value") for v in container["env"]}
    heap = quantity(env["GOMEMLIMIT"])
    limit = quantity(container["resources"]["limits"]["memory"])
    assert heap <= 0.95 * limit
    consumers = int(config_map("prod", "price-stream")["STREAM_MAX_CONSUMERS"])
    # One node may hold most of them (R1 consumers land where their creator's request goes).
    assert heap >= consumers * STORM_BYTES_PER_CONSUMER, (heap, consumers)
    conf = config_map("prod", "nats-config")["nats.conf"]
    assert "Go heap" in conf, "nats.conf says where memory consumers live"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_ingress_keeps_event_streams_unbuffered_and_open(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = gateway_settings(overlay, monkeypatch)
    annotations = named(overlay, "Ingress", "gateway")["metadata"]["annotations"]
    prefix = "nginx.ingress.kubernetes.io/"
    assert annotations[prefix + "proxy-buffering"] == "off"
    for timeout in ("proxy-read-timeout", "proxy-send-timeout"):
        assert int(annotations[prefix + timeout]) >= 10 * settings.heartbeat


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_variable_is_a_documented_setting_with_a_valid_value(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for command in ("gateway", "publisher"):
        for deployment in component(overlay, command):
            for container in containers(deployment):
                env = environment(overlay, container)
                known = documented_variables(command) | OTHER_VARIABLES.get(command, set())
                unknown = set(env) - known
                assert not unknown, f"{deployment['metadata']['name']}: not settings: {unknown}"
                with monkeypatch.context() as scoped:
                    load_settings(command, env, scoped)  # exits 2 on a value out of range


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_and_publishers_agree_on_the_stream(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both ensure the stream at start: different configs would keep updating it."""
    configs = set()
    for command in ("gateway", "publisher"):
        for deployment in component(overlay, command):
            (container,) = containers(deployment)
            with monkeypatch.context() as scoped:
                configs.add(
                    load_settings(
                        command, environment(overlay, container), scoped
                    ).stream_settings()
                )
    assert len(configs) == 1, configs


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_one_publisher_deployment_per_source(overlay: str, monkeypatch: pytest.MonkeyPatch) -> None:
    sources = []
    for deployment in component(overlay, "publisher"):
        spec = deployment["spec"]
        # Two pods of one source would share its Nats-Msg-Id space.
        assert spec["replicas"] == 1
        assert spec["strategy"]["type"] == "Recreate"
        (container,) = containers(deployment)
        assert container["command"] == ["python", "-m", "publisher"]
        assert "PUBLISHER_SOURCE" in {v["name"] for v in container["env"]}
        with monkeypatch.context() as scoped:
            settings = load_settings("publisher", environment(overlay, container), scoped)
        assert isinstance(settings, PublisherSettings)
        sources.append(settings.source)
    assert len(sources) >= 2
    assert len(set(sources)) == len(sources)
