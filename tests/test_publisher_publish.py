"""Publishing ticks to a real JetStream: ids, de-duplication, retries, pacing."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from nats.js import JetStreamContext
from nats.js.api import RawStreamMsg

from contracts.messages import PriceTick
from contracts.symbols import subject_for
from publisher.app import PublisherService
from publisher.settings import PublisherSettings
from publisher.ticker import TickPublisher
from publisher.ticks import PriceWalk
from tests.servers import NatsServer, eventually

OpenService = Callable[..., Awaitable[PublisherService]]


@pytest.fixture
async def open_service(nats_url: str) -> AsyncIterator[OpenService]:
    """Connected PublisherServices (no tick loop running); closed at the end."""
    services: list[PublisherService] = []

    async def open_(**overrides: Any) -> PublisherService:
        service = PublisherService(PublisherSettings(nats_url=nats_url, **overrides))
        services.append(service)
        await service.open()
        return service

    try:
        yield open_
    finally:
        for service in services:
            await service.close()


async def stored(js: JetStreamContext, stream: str = "PRICES") -> list[RawStreamMsg]:
    state = (await js.stream_info(stream)).state
    if state.messages == 0:
        return []
    return [await js.get_msg(stream, seq) for seq in range(state.first_seq, state.last_seq + 1)]


def msg_id(msg: RawStreamMsg) -> str:
    assert msg.headers is not None
    return str(msg.headers["Nats-Msg-Id"])


def source_of(msg: RawStreamMsg) -> str:
    return PriceTick.decode(msg.data or b"").source


async def test_ticks_are_stored_with_source_counter_ids_and_decodable_bodies(
    open_service: OpenService, js: JetStreamContext
) -> None:
    service = await open_service(source="pub-t", symbols="AAPL,BRK.B")
    ticker = TickPublisher(service.prices, service.settings, first_id=1)
    for _ in range(3):
        await ticker.publish_round()

    msgs = await stored(js)
    # Ids are taken in symbol order, round after round.
    assert {msg_id(m): m.subject for m in msgs} == {
        "pub-t:1": "prices.AAPL",
        "pub-t:2": "prices.BRK_B",
        "pub-t:3": "prices.AAPL",
        "pub-t:4": "prices.BRK_B",
        "pub-t:5": "prices.AAPL",
        "pub-t:6": "prices.BRK_B",
    }
    for m in msgs:
        tick = PriceTick.decode(m.data or b"")
        assert m.subject == subject_for(tick.symbol)
        assert tick.source == "pub-t"
        assert m.headers is not None
        assert m.headers["content-type"] == "application/json"
    assert ticker.stats.published == 6
    assert ticker.stats.failed == ticker.stats.duplicates == ticker.stats.retries == 0


async def test_a_restarted_publisher_with_the_same_source_does_not_reuse_ids(
    open_service: OpenService, js: JetStreamContext
) -> None:
    service = await open_service(source="pub-t", symbols="AAPL,MSFT")
    first = TickPublisher(service.prices, service.settings)
    await first.publish_round()
    second = TickPublisher(service.prices, service.settings)  # as after a restart
    await second.publish_round()

    assert second.stats.duplicates == 0
    ids = [msg_id(m) for m in await stored(js)]
    assert len(ids) == len(set(ids)) == 4
    counters = [int(i.removeprefix("pub-t:")) for i in ids]
    assert counters == sorted(counters)


async def test_two_publishers_on_overlapping_symbols_both_land_each_once(
    open_service: OpenService, js: JetStreamContext
) -> None:
    a = await open_service(source="pub-a", symbols="AAPL,MSFT")
    b = await open_service(source="pub-b", symbols="MSFT,GOOG")
    # The same counters on purpose: the source alone keeps their ids apart.
    ticker_a = TickPublisher(a.prices, a.settings, first_id=1)
    ticker_b = TickPublisher(b.prices, b.settings, first_id=1)
    for _ in range(5):
        await asyncio.gather(ticker_a.publish_round(), ticker_b.publish_round())

    msgs = await stored(js)
    ids = Counter(msg_id(m) for m in msgs)
    assert len(msgs) == 20
    assert set(ids.values()) == {1}
    sources_by_subject: dict[str, set[str]] = {}
    for m in msgs:
        sources_by_subject.setdefault(m.subject or "", set()).add(source_of(m))
    assert sources_by_subject == {
        "prices.AAPL": {"pub-a"},
        "prices.MSFT": {"pub-a", "pub-b"},
        "prices.GOOG": {"pub-b"},
    }


async def test_a_repeated_msg_id_is_stored_once(
    open_service: OpenService, js: JetStreamContext
) -> None:
    service = await open_service(source="pub-t", symbols="AAPL")
    ticker = TickPublisher(service.prices, service.settings)
    tick = ticker.walk.tick("AAPL")

    first = await ticker.publish_once(tick, "pub-t:42")
    again = await ticker.publish_once(tick, "pub-t:42")

    assert first is not None
    assert again is not None
    assert not first.duplicate
    assert again.duplicate
    assert again.seq == first.seq
    assert [msg_id(m) for m in await stored(js)] == ["pub-t:42"]
    assert (ticker.stats.published, ticker.stats.duplicates) == (1, 1)


async def test_a_publish_whose_ack_is_lost_is_retried_and_stored_once(
    open_service: OpenService, nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    service = await open_service(
        source="pub-t", symbols="AAPL", publish_timeout=0.3, publish_retries=30
    )
    ticker = TickPublisher(service.prices, service.settings, first_id=1)
    connection = service.broker.connection
    await nats_server.stop()
    await eventually(lambda: not connection.is_connected, within=5, what="client disconnected")

    with caplog.at_level(logging.WARNING, logger="publisher.ticker"):
        # While NATS is away the client buffers each attempt and its ack never comes;
        # the buffered copies all reach the stream once the server is back.
        publishing = asyncio.create_task(ticker.publish_once(ticker.walk.tick("AAPL")))
        await eventually(lambda: ticker.stats.retries >= 2, within=10, what="two retries")
        await nats_server.start()
        async with asyncio.timeout(30):
            ack = await publishing

    assert ack is not None
    assert ticker.stats.failed == 0
    assert ticker.stats.published == 1
    msgs = await stored(connection.jetstream())
    assert [msg_id(m) for m in msgs] == ["pub-t:1"]
    retries = [r for r in caplog.records if r.getMessage() == "publish retry"]
    assert len(retries) == ticker.stats.retries
    assert {getattr(r, "msg_id", None) for r in retries} == {"pub-t:1"}


async def test_a_publish_that_keeps_failing_is_logged_and_counted(
    open_service: OpenService, nats_server: NatsServer, caplog: pytest.LogCaptureFixture
) -> None:
    service = await open_service(
        source="pub-t", symbols="AAPL", publish_timeout=0.2, publish_retries=2
    )
    ticker = TickPublisher(service.prices, service.settings, first_id=7)
    await nats_server.stop()

    with caplog.at_level(logging.WARNING, logger="publisher.ticker"):
        ack = await ticker.publish_once(ticker.walk.tick("AAPL"))

    assert ack is None
    assert (ticker.stats.failed, ticker.stats.retries, ticker.stats.published) == (1, 2, 0)
    [failure] = [r for r in caplog.records if r.getMessage() == "publish failed"]
    assert failure.levelno == logging.ERROR
    assert getattr(failure, "msg_id", None) == "pub-t:7"
    assert getattr(failure, "attempts", None) == 3


async def test_run_keeps_to_the_rate_and_returns_when_stopped(
    open_service: OpenService, js: JetStreamContext
) -> None:
    service = await open_service(source="pub-t", symbols="AAPL,MSFT", rate=20.0)
    ticker = TickPublisher(service.prices, service.settings, first_id=1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    running = asyncio.create_task(ticker.run())
    try:
        await eventually(lambda: ticker.stats.published >= 20, within=10, what="10 rounds")
        elapsed = loop.time() - started
    finally:
        ticker.stop()
        async with asyncio.timeout(5):
            await running

    # The first round is due at once and each next one a period later: never faster.
    rounds = ticker.stats.published // 2
    assert elapsed >= (10 - 1) / 20.0
    assert rounds >= 10
    assert len(await stored(js)) == ticker.stats.published


async def test_run_behind_schedule_slows_down_and_says_so_once_per_stretch(
    open_service: OpenService, caplog: pytest.LogCaptureFixture
) -> None:
    # No JetStream round trip fits in 1/10,000 s: most rounds end after the next is due.
    service = await open_service(source="pub-t", symbols="AAPL,MSFT,GOOG", rate=10_000.0)
    ticker = TickPublisher(service.prices, service.settings, first_id=1)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with caplog.at_level(logging.INFO, logger="publisher.ticker"):
        running = asyncio.create_task(ticker.run())
        try:
            await eventually(lambda: ticker.stats.published >= 300, within=10, what="100 rounds")
        finally:
            ticker.stop()
            async with asyncio.timeout(5):
                await running
    elapsed = loop.time() - started

    assert ticker.stats.late_rounds > 0
    assert ticker.stats.published % 3 == 0
    behind = [r for r in caplog.records if r.getMessage().startswith("publishing behind")]
    again = [r for r in caplog.records if r.getMessage() == "publishing on schedule again"]
    # One warning when a late stretch starts, not one per late round.
    assert len(behind) in {len(again), len(again) + 1}
    assert len(behind) <= ticker.stats.late_rounds
    assert elapsed >= (ticker.stats.published // 3 - 1) / 10_000.0


async def test_the_app_publishes_from_startup_until_shutdown(
    nats_url: str, js: JetStreamContext
) -> None:
    service = PublisherService(
        PublisherSettings(nats_url=nats_url, source="pub-app", symbols="AAPL,GOOG", rate=50.0)
    )
    async with service.app:
        await eventually(
            lambda: _count(js, at_least=10), within=10, what="ticks from the running app"
        )
        connection = service.broker.connection
        assert len(_tick_loops()) == 1
    # Nothing can be published after shutdown: the loop's task has ended and the app's
    # only connection is closed. Every tick it had acked is what the stream holds.
    assert _tick_loops() == [], "the tick loop outlived the app"
    assert connection.is_closed, "the app's connection is still open"
    state = (await js.stream_info("PRICES")).state
    assert service.ticker is not None
    assert state.messages == state.last_seq == service.ticker.stats.published
    assert not service.crashed


def _tick_loops() -> list[asyncio.Task[object]]:
    return [t for t in asyncio.all_tasks() if t.get_name() == "tick-loop" and not t.done()]


async def _count(js: JetStreamContext, *, at_least: int) -> bool:
    return (await js.stream_info("PRICES")).state.messages >= at_least


async def test_walk_can_be_given_for_reproducible_prices(
    open_service: OpenService, js: JetStreamContext
) -> None:
    service = await open_service(source="pub-t", symbols="AAPL")
    walk = PriceWalk(["AAPL"], "pub-t", seed=5)
    expected = PriceWalk(["AAPL"], "pub-t", seed=5)
    ticker = TickPublisher(service.prices, service.settings, walk=walk, first_id=1)
    for _ in range(3):
        await ticker.publish_round()
    prices = [PriceTick.decode(m.data or b"").price for m in await stored(js)]
    assert prices == [expected.step("AAPL") for _ in range(3)]
