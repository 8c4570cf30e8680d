"""Each overlay's own nats.conf, run here as real nats-server processes (as many nodes as its
StatefulSet, with the variables its pods get), takes the stream that overlay configures:
`nats-server -t` alone does not see that the file store is smaller than the stream."""

from __future__ import annotations

import dataclasses
import re
import secrets
from pathlib import Path
from typing import Any

import pytest
from nats.js.api import StreamInfo

from contracts.provision import provision
from contracts.settings import CommonSettings, load_settings
from contracts.stream import StreamSettings, ensure_stream
from tests.cluster import NatsCluster
from tests.manifests import OVERLAYS, config_map, containers, named, quantity


def common_settings(overlay: str) -> CommonSettings:
    """What the overlay's `price-stream` ConfigMap sets."""
    env = config_map(overlay, "price-stream")
    return load_settings(CommonSettings, [], env, prog="test", env_prefix="")


def stream_settings(overlay: str) -> StreamSettings:
    return common_settings(overlay).stream_settings()


def nats_environment(overlay: str) -> dict[str, str]:
    """The variables the NATS pods get, as the kubelet makes them: literals with `$(VAR)`
    references to earlier variables expanded, each secret a fresh all-digit password (the
    hardest case: nats.conf reads an unquoted `$VAR` of digits as a number)."""
    (container,) = containers(named(overlay, "StatefulSet", "nats"))
    env: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = re.sub(r"\$\((\w+)\)", lambda m: env[m[1]], var["value"])
        elif "secretKeyRef" in var["valueFrom"]:
            env[var["name"]] = str(10**19 + secrets.randbelow(10**19))
    env.pop("SERVER_NAME", None)  # each local node names itself
    return env


def user(env: dict[str, str], name: str) -> dict[str, Any]:
    """NATS settings of one of the config's users (the password as in the Secret), or none
    where the config has no users."""
    password = env.get(f"{name.upper()}_NATS_PASSWORD_SECRET")
    if not password:
        return {}
    return {"nats_user": name, "nats_password": password, "nats_inbox_prefix": f"_INBOX_{name}"}


@pytest.mark.parametrize("overlay", OVERLAYS)
async def test_each_overlays_nats_takes_the_stream_it_configures(
    overlay: str, tmp_path: Path
) -> None:
    replicas = named(overlay, "StatefulSet", "nats")["spec"]["replicas"]
    env = nats_environment(overlay)
    settings = stream_settings(overlay)
    assert settings.replicas <= replicas
    cluster = NatsCluster(
        tmp_path,
        replicas,
        config=config_map(overlay, "nats-config")["nats.conf"],
        env=env,
    )
    if replicas == 1:
        await cluster.nodes[0].start()  # no cluster, so no meta leader to wait for
    else:
        await cluster.start()
    try:
        # As the Job stream-provision does it, as its NATS user; twice: each apply runs it,
        # and it re-adds the existing stream.
        provisioner = dataclasses.replace(
            common_settings(overlay),
            nats_url=cluster.urls(),
            **user(env, "provisioner"),
            **(cluster.pki.client_settings("provisioner") if cluster.pki else {}),
        )
        for _ in range(2):
            assert (await provision(provisioner, wait=10)).config.deny_purge
        admin = user(env, "admin")
        nc = await cluster.connect("check", admin.get("nats_user"), admin.get("nats_password"))
        try:
            js = nc.jetstream(timeout=10)
            info: StreamInfo = await js.stream_info(settings.name)
            assert info.config.max_bytes == settings.max_bytes
            assert info.config.num_replicas == settings.replicas
            ack = await js.publish(f"{settings.subject_prefix}.AAPL", b"{}")
            assert ack.seq == 1
            # A process that ensures the stream at start (the gateway in dev) re-adds it.
            await ensure_stream(js, settings)
        finally:
            await nc.close()
    finally:
        await cluster.stop()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_overlays_file_store_holds_the_stream_and_fits_its_volume(overlay: str) -> None:
    conf = config_map(overlay, "nats-config")["nats.conf"]
    found = re.search(r"^\s*max_file_store:\s*(\S+)", conf, re.M)
    assert found is not None
    store = quantity(found[1])  # binary units only: `1G` is 10^9 bytes to nats-server
    assert store >= stream_settings(overlay).max_bytes
    (claim,) = named(overlay, "StatefulSet", "nats")["spec"]["volumeClaimTemplates"]
    volume = quantity(claim["spec"]["resources"]["requests"]["storage"])
    assert store <= 0.9 * volume, "the file system keeps a share of the volume"
