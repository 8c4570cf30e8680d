"""deploy/ rendered with `kubectl kustomize` and checked offline: every object is valid for
Kubernetes, no secret is committed, and each overlay has the topology it claims."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import kubernetes_validate  # type: ignore[import-untyped]
import pytest

from tests.manifests import (
    DEPLOY,
    OVERLAYS,
    SECRET,
    component,
    config_map,
    containers,
    named,
    objects,
    quantity,
    render,
    stand_in_tls,
    workloads,
)
from tests.nats_pki import MOUNT
from tests.servers import BIN

# The oldest version the manifests claim (the preStop sleep action is on by default from
# 1.30) and the newest the validator knows.
KUBERNETES_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]

# cert-manager's kinds (the prod overlay's NATS certificates): not Kubernetes' own.
CUSTOM_GROUPS = {"cert-manager.io"}


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
    conf.write_text(text.replace(MOUNT, str(stand_in_tls())))
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
