"""The prod overlay's front door: a per-user stream limit, and X-Forwarded-For believed only
from the pod network the ingress controller lives in, checked on the rendered overlay and
with the overlay's value in a real gateway (uvicorn's FORWARDED_ALLOW_IPS)."""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import AsyncIterator

import httpx
import pytest
from nats.js import JetStreamContext

from tests.conftest import RunningGateway, StartGateway
from tests.manifests import component, containers, environment, gateway_settings

LOOPBACK = ipaddress.ip_address("127.0.0.1")


def prod_trusted_proxies() -> str:
    (deployment,) = component("prod", "gateway")
    (container,) = containers(deployment)
    return environment("prod", container)["FORWARDED_ALLOW_IPS"]


def test_prod_limits_streams_per_user(monkeypatch: pytest.MonkeyPatch) -> None:
    assert gateway_settings("prod", monkeypatch).max_connections_per_user > 0


def test_prod_trusts_forwarded_for_only_from_private_networks() -> None:
    networks = [ipaddress.ip_network(n.strip()) for n in prod_trusted_proxies().split(",")]
    # No `*` (uvicorn's "everyone") and nothing on the internet: a client's own header is
    # believed only when a proxy inside the cluster sent it.
    assert networks
    assert all(network.is_private for network in networks), networks
    assert not any(LOOPBACK in network for network in networks)


@contextlib.asynccontextmanager
async def open_stream(
    http: httpx.AsyncClient, gateway: RunningGateway, forwarded_for: str
) -> AsyncIterator[int]:
    """A /stocks stream held open, sent as if by a proxy for `forwarded_for`: its status."""
    headers = {"X-Forwarded-For": forwarded_for}
    async with http.stream("GET", f"{gateway.url}/stocks?symbols=AAPL", headers=headers) as r:
        yield r.status_code


@pytest.mark.parametrize(
    ("trusted", "second"),
    [
        pytest.param(None, 503, id="prod-range-ignores-loopback"),
        pytest.param("127.0.0.1", 200, id="a-proxy-in-range-is-believed"),
    ],
)
async def test_forwarded_for_counts_only_from_a_trusted_proxy(
    trusted: str | None,
    second: int,
    start_gateway: StartGateway,
    js: JetStreamContext,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two streams from 127.0.0.1 claiming two addresses, one stream per address allowed:
    with the prod range the header is ignored (one address, the second is refused); from a
    proxy in the trusted range each claimed address counts on its own."""
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", trusted or prod_trusted_proxies())
    gateway = await start_gateway(max_connections_per_client=1)
    async with (
        httpx.AsyncClient(timeout=10) as http,
        open_stream(http, gateway, "203.0.113.1") as first,
        open_stream(http, gateway, "203.0.113.2") as other,
    ):
        assert (first, other) == (200, second)
