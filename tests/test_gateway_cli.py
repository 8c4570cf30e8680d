"""`python -m gateway` as an operator runs it: flags, variables, signals."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from nats.js import JetStreamContext

from tests.processes import GatewayProcess, run_command
from tests.servers import eventually
from tests.sse_client import open_stream
from tests.ticks import publish

CONTRACT_FLAGS = [
    "--nats-url",
    "--host",
    "--port",
    "--heartbeat",
    "--inactive-threshold",
    "--max-connections",
    "--max-symbols",
]


@pytest.fixture
async def gateway_process(nats_url: str) -> AsyncIterator[GatewayProcess]:
    process = GatewayProcess(nats_url, "--inactive-threshold", "2", "--heartbeat", "1")
    try:
        await process.start()
        yield process
    finally:
        await process.stop()


async def test_help_documents_every_flag_with_its_variable() -> None:
    status, out, _ = await run_command("-m", "gateway", "--help")
    assert status == 0
    for flag in CONTRACT_FLAGS:
        assert flag in out
    assert "$NATS_URL" in out
    assert "$GATEWAY_PORT" in out


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--port", "0"], {}, "--port must be 1-65535"),
        (["--heartbeat", "-1"], {}, "--heartbeat must be > 0"),
        (["--backlog", "0"], {}, "--backlog must be > 0"),
        (["--max-symbols", "many"], {}, "invalid int value: 'many'"),
        ([], {"GATEWAY_MAX_CONNECTIONS": "lots"}, "$GATEWAY_MAX_CONNECTIONS: invalid int"),
    ],
)
async def test_bad_configuration_exits_2_with_one_line(
    args: list[str], env: dict[str, str], message: str
) -> None:
    status, _, err = await run_command("-m", "gateway", *args, env=env)
    assert status == 2
    assert message in err
    assert "Traceback" not in err


async def test_serves_prices_configured_by_environment(
    gateway_process: GatewayProcess, js: JetStreamContext
) -> None:
    await publish(js, "AAPL", "42.42")
    async with open_stream(gateway_process.url, {"symbols": "AAPL"}) as stream:
        event = await stream.next_event()
    assert event.json()["price"] == 42.42


async def test_sigterm_ends_streams_cleanly_deletes_consumers_and_exits_0(
    gateway_process: GatewayProcess, js: JetStreamContext
) -> None:
    async with open_stream(gateway_process.url, {"symbols": "AAPL"}) as stream:
        await stream.next_block()
        assert (await js.stream_info("PRICES")).state.consumer_count >= 1
        assert await gateway_process.signal(signal.SIGTERM) == 0
        while await stream.next_block() is not None:
            pass
    assert stream.cut is None
    assert bytes(stream.raw).endswith(b"reconnect to resume\n\n")
    assert (await js.stream_info("PRICES")).state.consumer_count == 0


async def test_consumer_of_a_killed_gateway_goes_after_the_inactivity_threshold(
    gateway_process: GatewayProcess, js: JetStreamContext
) -> None:
    async with open_stream(gateway_process.url, {"symbols": "AAPL"}) as stream:
        await stream.next_block()
        assert await gateway_process.signal(signal.SIGKILL) == -signal.SIGKILL
    assert (await js.stream_info("PRICES")).state.consumer_count >= 1
    await eventually(lambda: _no_consumers(js), within=10, what="consumer removed by NATS")


async def _no_consumers(js: JetStreamContext) -> bool:
    return (await js.stream_info("PRICES")).state.consumer_count == 0


async def test_restarted_gateway_serves_beside_the_consumers_of_a_killed_one(
    nats_url: str, js: JetStreamContext
) -> None:
    # Orphans that outlive the restart (a long inactivity threshold), among them a client's
    # own consumer (without a shared feed, a client reads its own for good). The same
    # --gateway-id, as a pod's restarted container keeps its name: the new run's consumers
    # must not take the old ones' names.
    args = ("--inactive-threshold", "60", "--shared-feed", "false", "--gateway-id", "again")
    killed, restarted = GatewayProcess(nats_url, *args), GatewayProcess(nats_url, *args)
    try:
        await killed.start()
        await publish(js, "AAPL", "6.00")
        async with open_stream(killed.url, {"symbols": "AAPL"}) as stream:
            await stream.next_event()
            await killed.signal(signal.SIGKILL)
        orphans = [c.name for c in await js.consumers_info("PRICES")]
        await restarted.start()
        await publish(js, "AAPL", "7.00")
        async with open_stream(restarted.url, {"symbols": "AAPL"}) as stream:
            event = await stream.next_event()
            names = {c.name for c in await js.consumers_info("PRICES")}
    finally:
        await restarted.stop()
        await killed.stop()
    assert event.json()["price"] == 7.0
    assert any(name.startswith("sse-") for name in orphans), "the client's consumer is left"
    assert set(orphans) <= names, "they are still there, and did not get in the way"
    assert len(names) > len(orphans)


async def test_a_second_sigterm_ends_at_once(nats_url: str, js: JetStreamContext) -> None:
    gateway = GatewayProcess(nats_url, "--drain-period", "60")
    try:
        await gateway.start()
        async with open_stream(gateway.url) as one, open_stream(gateway.url) as two:
            await one.next_block()
            await two.next_block()
            assert gateway.process is not None
            gateway.process.send_signal(signal.SIGTERM)
            await eventually(_not_ready(gateway), within=5, what="draining")
            async with asyncio.timeout(5):  # not the 60 s drain period
                status = await gateway.signal(signal.SIGTERM)
    finally:
        await gateway.stop()
    assert status == 0


def _not_ready(gateway: GatewayProcess) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return not await gateway.ready()

    return check
