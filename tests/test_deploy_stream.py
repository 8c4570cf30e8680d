"""Each overlay's own nats.conf, run here as real nats-server processes (as many nodes as its
StatefulSet, with the variables its pods get), takes the stream that overlay configures:
`nats-server -t` alone does not see that the file store is smaller than the stream."""

from __future__ import annotations

import re
import secrets
from pathlib import Path

import pytest
from nats.js.api import StreamInfo

from contracts.settings import CommonSettings, load_settings
from contracts.stream import StreamSettings, ensure_stream
from tests.cluster import NatsCluster
from tests.test_deploy_manifests import OVERLAYS, config_map, containers, named, quantity

Object = dict[str, object]


def stream_settings(overlay: str) -> StreamSettings:
    """The stream as the overlay's `price-stream` ConfigMap describes it."""
    env = config_map(overlay, "price-stream")
    settings = load_settings(CommonSettings, [], env, prog="test", env_prefix="")
    return settings.stream_settings()


def nats_environment(overlay: str) -> dict[str, str]:
    """The variables the NATS pods get: literals as they are, each secret a fresh password."""
    (container,) = containers(named(overlay, "StatefulSet", "nats"))
    env: dict[str, str] = {}
    for var in container.get("env", []):
        if "value" in var:
            env[var["name"]] = var["value"]
        elif "secretKeyRef" in var["valueFrom"]:
            env[var["name"]] = "p" + secrets.token_hex(12)
    env.pop("SERVER_NAME", None)  # each local node names itself
    return env


def admin(env: dict[str, str]) -> tuple[str | None, str | None]:
    """Who provisions the stream: the admin user where the config has users, else anyone."""
    password = env.get("ADMIN_NATS_PASSWORD")
    return ("admin", password) if password else (None, None)


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
        nc = await cluster.connect("provision", *admin(env))
        try:
            js = nc.jetstream(timeout=10)
            info: StreamInfo = await ensure_stream(js, settings)
            assert info.config.max_bytes == settings.max_bytes
            assert info.config.num_replicas == settings.replicas
            ack = await js.publish(f"{settings.subject_prefix}.AAPL", b"{}")
            assert ack.seq == 1
            # Twice, as every provisioning start does: idempotent.
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
