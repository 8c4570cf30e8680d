"""A publisher started before NATS waits for it with back-off and then publishes, instead of
exiting 2; its probe endpoint says alive throughout and ready only while it publishes.
Real processes: `python -m publisher`, then a nats-server on the port it was told."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path

import httpx
import nats
import pytest

from publisher.health import respond
from tests.cluster import PublisherProcess
from tests.manifests import OVERLAYS, component, containers, environment
from tests.servers import NatsServer, eventually, free_port


async def probe(port: int, path: str) -> int | None:
    """The status of GET `path` on the health port, None while nothing answers."""
    try:
        async with httpx.AsyncClient(timeout=2) as http:
            return (await http.get(f"http://127.0.0.1:{port}{path}")).status_code
    except httpx.TransportError:
        return None


async def stored(url: str) -> int:
    nc = await nats.connect(url, allow_reconnect=False, connect_timeout=2)
    try:
        return (await nc.jetstream().stream_info("PRICES")).state.messages
    finally:
        await nc.close()


async def test_a_publisher_started_before_nats_waits_then_publishes(tmp_path: Path) -> None:
    nats_port, health_port = free_port(), free_port()
    publisher = PublisherProcess(
        {
            "NATS_URL": f"nats://127.0.0.1:{nats_port}",
            "PUBLISHER_WAIT_FOR_NATS": "-1",
            "PUBLISHER_HEALTH_PORT": str(health_port),
            "PUBLISHER_SYMBOLS": "AAPL",
            "PUBLISHER_RATE": "20",
        },
        tmp_path / "publisher.log",
    )
    server = NatsServer(tmp_path / "store", port=nats_port)
    await publisher.start()
    try:
        # Alive but not ready while there is no NATS; it keeps trying, it does not exit.
        await eventually(lambda: _status_is(health_port, "/healthz", 200), within=15, what="alive")
        assert await probe(health_port, "/readyz") == 503
        await eventually(
            lambda: "waiting for NATS" in (tmp_path / "publisher.log").read_text(),
            within=15,
            what="a waiting log line",
        )
        assert publisher.process is not None
        assert publisher.process.returncode is None
        await server.start()
        await eventually(lambda: _status_is(health_port, "/readyz", 200), within=30, what="ready")
        await eventually(lambda: _stored_some(server.url), within=15, what="ticks stored in PRICES")
        # NATS goes away: still alive (a restart would not help), no longer ready.
        await server.stop()
        await eventually(lambda: _status_is(health_port, "/readyz", 503), within=15, what="unready")
        assert await probe(health_port, "/healthz") == 200
        await server.start()
        await eventually(
            lambda: _status_is(health_port, "/readyz", 200), within=30, what="ready again"
        )
        assert await publisher.stop() == 0
    finally:
        await publisher.kill()
        await server.stop()


async def _status_is(port: int, path: str, status: int) -> bool:
    return await probe(port, path) == status


async def _stored_some(url: str) -> bool:
    try:
        return await stored(url) > 0
    except (nats.errors.Error, OSError, TimeoutError):
        return False


async def test_without_a_wait_a_publisher_still_exits_2_when_nats_is_down(
    tmp_path: Path,
) -> None:
    """The default for a command line: say so at once rather than hang."""
    publisher = PublisherProcess(
        {
            "NATS_URL": f"nats://127.0.0.1:{free_port()}",
            "PUBLISHER_CONNECT_TIMEOUT": "1",
        },
        tmp_path / "publisher.log",
    )
    await publisher.start()
    assert publisher.process is not None
    async with asyncio.timeout(30):
        assert await publisher.process.wait() == 2


@pytest.mark.parametrize(
    ("line", "status"),
    [
        (b"GET /healthz HTTP/1.1", 200),
        (b"GET /readyz?verbose HTTP/1.1", 503),
        (b"POST /healthz HTTP/1.1", 405),
        (b"GET /metrics HTTP/1.1", 404),
        (b"\x16\x03\x01", 400),
        (b"GET /healthz", 400),
    ],
)
def test_the_probe_endpoint_answers_each_request_line(line: bytes, status: int) -> None:
    answer = respond(line, lambda: "not publishing")
    assert answer.startswith(f"HTTP/1.1 {status} ".encode())


async def test_a_silent_prober_is_closed_with_a_400(tmp_path: Path) -> None:
    """The endpoint holds no socket open for a client that never sends its request."""
    health_port = free_port()
    publisher = PublisherProcess(
        {
            "NATS_URL": f"nats://127.0.0.1:{free_port()}",
            "PUBLISHER_WAIT_FOR_NATS": "-1",
            "PUBLISHER_HEALTH_PORT": str(health_port),
        },
        tmp_path / "publisher.log",
    )
    await publisher.start()
    try:
        await eventually(lambda: _status_is(health_port, "/healthz", 200), within=15, what="alive")
        with socket.create_connection(("127.0.0.1", health_port), timeout=15) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")  # and never the blank line
            answer = await asyncio.to_thread(sock.recv, 1024)
        assert answer.startswith(b"HTTP/1.1 400 ")
    finally:
        await publisher.kill()


# --- the Deployments: probes on the port the publisher serves them on -----------------------


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_publisher_deployments_wait_for_nats_and_probe_the_health_port(overlay: str) -> None:
    for deployment in component(overlay, "publisher"):
        (container,) = containers(deployment)
        env = environment(overlay, container)
        assert env["PUBLISHER_WAIT_FOR_NATS"] == "-1"
        assert env["PUBLISHER_HEALTH_HOST"] == "0.0.0.0"
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports == {"health": int(env["PUBLISHER_HEALTH_PORT"])}
        paths = {}
        for kind in ("livenessProbe", "readinessProbe"):
            get = container[kind]["httpGet"]
            assert get["port"] in ("health", ports["health"])
            paths[kind] = get["path"]
        assert paths == {"livenessProbe": "/healthz", "readinessProbe": "/readyz"}
        # Never restarted for waiting: liveness is answered while it waits for NATS.
        liveness = respond(f"GET {paths['livenessProbe']} HTTP/1.1".encode(), lambda: "waiting")
        assert liveness.startswith(b"HTTP/1.1 200 ")
