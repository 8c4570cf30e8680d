"""The prod overlay's nats.conf with TLS, run as a real 3-node cluster with a throwaway PKI of
the overlay's shape (tests/nats_pki.py): a plain-text client and a client without a
certificate are refused, a node without the route certificate does not join, and the
publisher and the gateway connect with TLS and stream ticks to an HTTP client."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import re
import shutil
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import nats
import pytest
from nats.errors import Error as NatsError

from contracts.provision import provision
from tests.cluster import NatsCluster, NatsNode, PublisherProcess, local_config
from tests.manifests import (
    Object,
    config_map,
    containers,
    named,
    objects,
    workloads,
)
from tests.nats_pki import CLIENT, MOUNT, SERVER, leaf, write_pki, write_secret
from tests.processes import GatewayProcess
from tests.servers import eventually, free_port
from tests.sse_client import open_stream
from tests.test_deploy_stream import common_settings, nats_environment, user

CONFIG = config_map("prod", "nats-config")["nats.conf"]


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[NatsCluster]:
    cluster = NatsCluster(tmp_path / "nats", config=CONFIG, env=nats_environment("prod"))
    try:
        await cluster.start()
        yield cluster
    finally:
        await cluster.stop()


def password(cluster: NatsCluster, name: str) -> str:
    secret: str = user(cluster.nodes[0].env, name)["nats_password"]
    return secret


async def monitor(node: NatsNode, path: str) -> dict[str, object]:
    async with httpx.AsyncClient(timeout=5) as http:
        answer: dict[str, object] = (
            await http.get(f"http://127.0.0.1:{node.monitor_port}/{path}")
        ).json()
        return answer


def test_the_prod_config_requires_tls_on_clients_and_routes() -> None:
    assert cluster_block_tls(CONFIG), "routes without TLS"
    assert re.search(r"^tls\s*\{[^}]*\bverify:\s*true", CONFIG, re.M), "clients without TLS"


def cluster_block_tls(conf: str) -> bool:
    match = re.search(r"^cluster\s*\{(.*?)^\}", conf, re.M | re.S)
    return match is not None and re.search(r"^\s+tls\s*\{", match[1], re.M) is not None


async def test_a_plain_text_client_is_refused(cluster: NatsCluster) -> None:
    node = cluster.nodes[0]
    reader, writer = await asyncio.open_connection("127.0.0.1", node.port)
    try:
        info = json.loads((await reader.readline()).removeprefix(b"INFO "))
        assert info["tls_required"] is True
        connect = {"user": "admin", "pass": password(cluster, "admin"), "verbose": False}
        writer.write(f"CONNECT {json.dumps(connect)}\r\nPING\r\n".encode())
        await writer.drain()
        # The server expects a TLS handshake and closes the connection: no PONG.
        async with asyncio.timeout(10):
            rest = await reader.read()
        assert b"PONG" not in rest
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()


async def test_a_tls_client_without_a_certificate_is_refused(cluster: NatsCluster) -> None:
    """The CA is trusted and the password is right, but there is no client certificate."""
    pki = cluster.pki
    assert pki is not None
    tls = ssl.create_default_context(cafile=pki.client_env("admin")["NATS_TLS_CA"])
    with pytest.raises((NatsError, OSError, ssl.SSLError)):
        await nats.connect(
            cluster.urls("admin", password(cluster, "admin")).split(","),
            tls=tls,
            allow_reconnect=False,
            connect_timeout=5,
        )


@pytest.mark.parametrize("route", ["genuine", "no-tls", "client-certificate", "other-ca"])
async def test_only_a_node_with_the_route_certificate_joins(
    route: str, cluster: NatsCluster, tmp_path: Path
) -> None:
    """A 4th node routed to the three: it joins with the overlay's route certificate only."""
    assert cluster.pki is not None
    pki = cluster.pki
    fourth = NatsNode("n3", tmp_path / "n3")
    fourth.port, fourth.cluster_port, fourth.monitor_port = (free_port() for _ in range(3))
    fourth.env = dict(cluster.nodes[0].env)
    fourth.routes = [f"nats://127.0.0.1:{node.cluster_port}" for node in cluster.nodes]
    # Its client side as the others'; its route certificate by `route`.
    mount = tmp_path / "n3-tls"
    shutil.copytree(pki.root / "server", mount / "server")
    text = local_config(CONFIG, fourth, cluster.nodes, mount)
    if route == "genuine":
        text = text.replace(str(mount / "routes"), str(pki.root / "routes"))
    elif route == "no-tls":
        text = re.sub(r"(\n  )tls \{[^}]*\}", r"\1", text)  # the cluster's tls block alone
        assert not cluster_block_tls(text)
    elif route == "client-certificate":  # as a program's, of the clients' CA
        pair = leaf("gateway", pki.client_ca, [SERVER, CLIENT])
        write_secret(mount / "routes", pair, pki.client_ca)
    else:
        rogue = write_pki(tmp_path / "rogue")
        text = text.replace(str(mount / "routes"), str(rogue.root / "routes"))
    fourth.config = tmp_path / "n3.conf"
    fourth.config.write_text(text)
    await fourth.start()
    try:
        if route == "genuine":
            await eventually(
                lambda: routes_of(cluster.nodes[0], want=3), within=20, what="n3 routed"
            )
            return
        # Each node's attempt to route to n3 (and n3's to them) fails its TLS handshake:
        # once every node has logged that, none has a route to n3.
        for node in cluster.nodes:
            await eventually(
                lambda node=node: refused_route(node),
                within=20,
                what=f"{node.name} refused a route with n3",
            )
        for node in cluster.nodes:
            routez = await monitor(node, "routez")
            names = {r.get("remote_name") for r in routez["routes"]}  # type: ignore[attr-defined]
            assert "n3" not in names, (node.name, names)
        assert (await monitor(fourth, "routez"))["num_routes"] == 0
    finally:
        await fourth.stop()


async def routes_of(node: NatsNode, want: int) -> bool:
    names = {r.get("remote_name") for r in (await monitor(node, "routez"))["routes"]}  # type: ignore[attr-defined]
    return len(names) == want


def refused_route(node: NatsNode) -> bool:
    """`node` logged a failed route handshake (n3's, the only node that can fail one)."""
    return "TLS route handshake error" in node.log.read_text(errors="replace")


async def test_the_publisher_and_the_gateway_stream_over_tls(cluster: NatsCluster) -> None:
    env = cluster.nodes[0].env
    settings = dataclasses.replace(
        common_settings("prod"),
        nats_url=cluster.urls(),
        **user(env, "provisioner"),
        **cluster.pki.client_settings("provisioner") if cluster.pki else {},
    )
    await provision(settings, wait=30)
    programs = {
        name: {
            "NATS_URL": cluster.urls(),
            "NATS_USER": name,
            "NATS_PASSWORD": password(cluster, name),
            "NATS_INBOX_PREFIX": f"_INBOX_{name}",
            "STREAM_REPLICAS": "3",
            **cluster.tls_env(name),
        }
        for name in ("gateway", "publisher")
    }
    gateway = GatewayProcess(
        cluster.urls(), env=programs["gateway"] | {"GATEWAY_ENSURE_STREAM": "false"}
    )
    publisher = PublisherProcess(
        programs["publisher"]
        | {"PUBLISHER_MANAGE_STREAM": "false", "PUBLISHER_SYMBOLS": "AAPL", "PUBLISHER_RATE": "20"},
        cluster.nodes[0].directory.parent / "publisher.log",
    )
    try:
        await gateway.start()
        await publisher.start()
        async with open_stream(gateway.url, {"symbols": "AAPL"}) as stream:
            events = await stream.events(3, timeout=15)
        assert {event.json()["symbol"] for event in events} == {"AAPL"}
        # Both programs' connections are TLS, as their own NATS users.
        tls_users = set()
        for node in cluster.nodes:
            for conn in (await monitor(node, "connz?auth=true"))["connections"]:  # type: ignore[attr-defined]
                if conn.get("tls_version"):
                    tls_users.add(conn.get("authorized_user"))
        assert {"gateway", "publisher"} <= tls_users
    finally:
        await publisher.kill()
        with contextlib.suppress(OSError):  # kept beside the NATS logs
            shutil.copyfile(gateway.log, cluster.nodes[0].directory.parent / "gateway.log")
        await gateway.stop()


# --- the rendered prod overlay: cert-manager objects, mounts, client settings -----------------


def certificates() -> dict[str, Object]:
    return {c["metadata"]["name"]: c["spec"] for c in objects("prod", "Certificate")}


def secret_mounts(workload: Object) -> dict[str, str]:
    """Secret name -> where the workload's (one) container mounts it."""
    pod = workload["spec"]["template"]["spec"]
    secrets = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
    (container,) = pod["containers"]
    return {
        secrets[m["name"]]: m["mountPath"]
        for m in container.get("volumeMounts", [])
        if m["name"] in secrets
    }


def test_prod_issues_every_certificate_from_an_issuer_it_renders() -> None:
    issuers = {i["metadata"]["name"]: i["spec"] for i in objects("prod", "Issuer")}
    certs = certificates()
    for name, spec in certs.items():
        assert spec["issuerRef"]["kind"] == "Issuer", name
        assert spec["issuerRef"]["name"] in issuers, name
        assert spec["privateKey"]["algorithm"] == "ECDSA", name
    # Each CA Issuer signs with a CA certificate of its own, made by the self-signed Issuer.
    for name, issuer in issuers.items():
        if "ca" in issuer:
            (ca,) = [c for c in certs.values() if c["secretName"] == issuer["ca"]["secretName"]]
            assert ca["isCA"] is True, name
            assert "selfSigned" in issuers[ca["issuerRef"]["name"]]
    assert not objects("dev", "Certificate")


def test_prod_nats_mounts_its_certificates_where_nats_conf_reads_them() -> None:
    certs = certificates()
    by_secret = {spec["secretName"]: name for name, spec in certs.items()}
    mounts = secret_mounts(named("prod", "StatefulSet", "nats"))
    read = set(re.findall(rf"{MOUNT}/(\w+)/(?:tls\.crt|tls\.key|ca\.crt)", CONFIG))
    assert read == {"server", "routes"}
    # directory -> the Certificate whose Secret is mounted there
    mounted = {
        directory: certs[by_secret[secret]]
        for secret, path in mounts.items()
        if (directory := path.removeprefix(MOUNT + "/")) in read
    }
    assert set(mounted) == read
    server, routes = mounted["server"], mounted["routes"]
    # Clients dial NATS_URL's host; nodes dial the routes' hosts (nats-N.nats-headless).
    host = config_map("prod", "price-stream")["NATS_URL"]
    assert host.startswith("tls://")
    assert host.removeprefix("tls://").split(":")[0] in server["dnsNames"]
    for route in re.findall(r"nats://(nats-\d+)(\.[\w.-]+):\d+", CONFIG):
        assert f"*{route[1]}" in routes["dnsNames"]
    assert set(routes["usages"]) == {"server auth", "client auth"}
    # The routes' CA signs the routes' certificate and nothing else.
    route_issuer = routes["issuerRef"]["name"]
    assert [c for c in certs.values() if c["issuerRef"]["name"] == route_issuer] == [routes]
    assert server["issuerRef"]["name"] != route_issuer


def test_prod_programs_connect_with_their_own_client_certificate() -> None:
    certs = certificates()
    by_secret = {spec["secretName"]: spec for spec in certs.values()}
    ca_secrets = {spec["secretName"] for spec in certs.values() if spec.get("isCA")}
    server_issuer = certs["nats-server"]["issuerRef"]["name"]
    seen = set()
    for workload in workloads("prod"):
        mounts = secret_mounts(workload)
        assert not set(mounts) & ca_secrets, "a CA's key is mounted"
        if workload["metadata"]["name"] == "nats":
            continue
        (container,) = containers(workload)
        env = {v["name"]: v.get("value") for v in container.get("env", [])}
        user = env["NATS_USER"]
        (secret,) = [s for s, path in mounts.items() if path == f"{MOUNT}/client"]
        spec = by_secret[secret]
        assert spec["commonName"] == user
        assert spec["usages"] == ["client auth"]
        assert spec["issuerRef"]["name"] == server_issuer
        for var, file in (("CA", "ca.crt"), ("CERT", "tls.crt"), ("KEY", "tls.key")):
            assert env[f"NATS_TLS_{var}"] == f"{MOUNT}/client/{file}"
        seen.add(user)
    assert seen == {"gateway", "publisher", "provisioner"}
