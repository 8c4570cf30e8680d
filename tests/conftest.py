"""Fixtures: every test gets its own real nats-server on a free loopback port."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import nats
import pytest
from hypothesis import core as hypothesis_core
from hypothesis import settings as hypothesis_settings
from hypothesis.vendor import pretty
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from schemathesis.generation import hypothesis as schemathesis_hypothesis

from contracts.stream import StreamSettings, ensure_stream
from gateway.app import build_app
from gateway.hub import Hub
from gateway.server import GatewayServer, server_config
from gateway.settings import Settings
from tests.servers import NatsServer, eventually, free_port

# Property tests and fuzzing: the same examples on every run (a CI failure reproduces
# locally), and no example database written into the repository.
# `pytest --hypothesis-profile=explore` draws new examples on each run instead.
hypothesis_settings.register_profile("ci", derandomize=True, database=None, deadline=None)
hypothesis_settings.register_profile("explore", database=None, deadline=None)
hypothesis_settings.load_profile("ci")
# schemathesis (its pytest plugin) swaps hypothesis' example printer for one that prints
# nothing, to speed up its own runs; that blanks every falsifying example. Let it patch
# now, once, then put the printer back.
schemathesis_hypothesis.setup()
hypothesis_core.RepresentationPrinter = pretty.RepresentationPrinter  # type: ignore[attr-defined]


@pytest.fixture
async def nats_server(tmp_path: Path) -> AsyncIterator[NatsServer]:
    async with NatsServer(tmp_path / "jetstream") as server:
        yield server


@pytest.fixture
def nats_url(nats_server: NatsServer) -> str:
    return nats_server.url


@pytest.fixture
async def nc(nats_url: str) -> AsyncIterator[NATS]:
    client = await nats.connect(nats_url, name="tests")
    try:
        yield client
    finally:
        await client.close()


@pytest.fixture
async def js(nc: NATS) -> JetStreamContext:
    context = nc.jetstream()
    await ensure_stream(context, StreamSettings())
    return context


@dataclass
class RunningGateway:
    url: str
    settings: Settings
    hub: Hub
    server: GatewayServer
    serving: asyncio.Task[None]

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.serving  # lifespan exit: streams drained, consumers deleted, NATS closed


StartGateway = Callable[..., Awaitable[RunningGateway]]


@pytest.fixture
async def start_gateway(nats_url: str) -> AsyncIterator[StartGateway]:
    """Start gateways in this process, on free ports, over real HTTP (uvicorn)."""
    running: list[RunningGateway] = []

    async def start(wait_connected: bool = True, **overrides: Any) -> RunningGateway:
        values: dict[str, Any] = {
            "nats_url": nats_url,
            "port": free_port(),
            "heartbeat": 0.5,
            "inactive_threshold": 5.0,
            "drain_period": 0.0,
        }
        settings = Settings(**(values | overrides))
        app = build_app(settings)
        hub = app.hub
        server = GatewayServer(server_config(settings, app, log_level="warning"), app)
        # Awaited in stop(): fixture set-up and teardown may run in different tasks,
        # so this cannot live in a TaskGroup.
        serving = asyncio.create_task(server.serve())
        gateway = RunningGateway(
            f"http://127.0.0.1:{settings.port}", settings, hub, server, serving
        )
        running.append(gateway)
        await eventually(
            lambda: server.started or serving.done(), within=10, what="gateway started"
        )
        if wait_connected:
            await eventually(lambda: _ready(gateway.url), within=10, what="gateway ready")
        return gateway

    try:
        yield start
    finally:
        for gateway in running:
            if not gateway.serving.done():
                await gateway.stop()


@pytest.fixture(params=["shared-feed", "own-consumer"])
async def gateway(
    start_gateway: StartGateway, js: JetStreamContext, request: pytest.FixtureRequest
) -> RunningGateway:
    """A gateway in each delivery mode: the contract holds in both."""
    return await start_gateway(shared_feed=request.param == "shared-feed")


async def _ready(url: str) -> bool:
    async with httpx.AsyncClient() as client:
        return (await client.get(f"{url}/readyz")).status_code == 200
