"""Start position: the latest prices for a fresh client, exactly the missed ones on resume,
and `event: reset` when the position cannot be resumed."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from nats.js import JetStreamContext

from contracts.stream import StreamSettings, ensure_stream
from tests.conftest import RunningGateway, StartGateway
from tests.servers import eventually
from tests.sse_client import open_stream
from tests.ticks import event_id, publish


async def test_fresh_client_gets_one_latest_tick_per_symbol_then_live(
    gateway: RunningGateway, js: JetStreamContext
) -> None:
    for price in ("1.01", "1.02", "1.03"):
        await publish(js, "AAPL", price)
        await publish(js, "MSFT", price)
    await publish(js, "GOOG", "9.99")
    async with open_stream(gateway.url, {"symbols": "AAPL,MSFT"}) as stream:
        snapshot = await stream.events(2)
        await stream.assert_quiet(0.3)
        await publish(js, "MSFT", "1.04")
        live = await stream.next_event()
    assert [(e.json()["symbol"], e.json()["price"]) for e in snapshot] == [
        ("AAPL", 1.03),
        ("MSFT", 1.03),
    ]
    assert (live.json()["symbol"], live.json()["price"]) == ("MSFT", 1.04)


async def test_resume_gets_exactly_the_missed_ticks_of_its_symbols(
    gateway: RunningGateway, js: JetStreamContext
) -> None:
    seqs = [
        await publish(js, symbol, f"{i}.5")
        for i, symbol in enumerate(["AAPL", "MSFT", "AAPL", "GOOG", "AAPL", "MSFT"], start=1)
    ]
    last_seen = await event_id(js, seqs[0])
    async with open_stream(
        gateway.url, {"symbols": "AAPL,MSFT"}, {"Last-Event-ID": last_seen}
    ) as stream:
        missed = await stream.events(4)
        await stream.assert_quiet(0.3)
    assert [e.id for e in missed] == [
        await event_id(js, s) for s in (seqs[1], seqs[2], seqs[4], seqs[5])
    ]


async def test_header_wins_over_query_parameter(
    gateway: RunningGateway, js: JetStreamContext
) -> None:
    seqs = [await publish(js, "AAPL", f"{i}") for i in range(1, 5)]
    async with open_stream(
        gateway.url,
        {"symbols": "AAPL", "lastEventId": await event_id(js, seqs[0])},
        {"Last-Event-ID": await event_id(js, seqs[2])},
    ) as stream:
        event = await stream.next_event()
    assert event.id == await event_id(js, seqs[3])


async def test_query_parameter_resumes_when_there_is_no_header(
    gateway: RunningGateway, js: JetStreamContext
) -> None:
    seqs = [await publish(js, "AAPL", f"{i}") for i in range(1, 4)]
    params = {"symbols": "AAPL", "lastEventId": await event_id(js, seqs[0])}
    async with open_stream(gateway.url, params) as stream:
        events = await stream.events(2)
    assert [e.id for e in events] == [await event_id(js, s) for s in seqs[1:]]


async def test_resume_on_another_gateway_continues_without_gap_or_duplicate(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    first, second = await start_gateway(), await start_gateway()
    received: list[str] = []
    published = [await publish(js, "AAPL", "10.00")]
    async with open_stream(first.url, {"symbols": "AAPL,MSFT"}) as stream:
        received.append((await stream.next_event()).id or "")
        for i in range(5):
            published.append(await publish(js, "AAPL" if i % 2 else "MSFT", f"10.0{i}"))
        received += [e.id or "" for e in await stream.events(5)]
    # Published while the client is away, then read from the other replica.
    for i in range(5):
        published.append(await publish(js, "MSFT", f"11.0{i}"))
    async with open_stream(
        second.url, {"symbols": "AAPL,MSFT"}, {"Last-Event-ID": received[-1]}
    ) as stream:
        received += [e.id or "" for e in await stream.events(5)]
        await stream.assert_quiet(0.3)
    assert received == [await event_id(js, s) for s in published]


async def test_position_of_a_purged_stream_gets_reset_then_the_latest_prices(
    gateway: RunningGateway, js: JetStreamContext
) -> None:
    old = await publish(js, "AAPL", "1.00")
    await publish(js, "AAPL", "1.10")
    old_id = await event_id(js, old)
    await js.purge_stream("PRICES")
    latest = await publish(js, "AAPL", "2.00")
    async with open_stream(gateway.url, {"symbols": "AAPL"}, {"Last-Event-ID": old_id}) as stream:
        await stream.next_block()  # retry
        reset = await stream.next_event()
        after = await stream.next_event()
    assert reset.event == "reset"
    assert reset.id is None
    assert reset.json()["reason"] == "position-lost"
    assert old_id in reset.json()["detail"]
    assert after.id == await event_id(js, latest)


async def test_position_that_aged_out_gets_reset(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway(stream_max_age=1.0)
    old_id = await event_id(js, await publish(js, "AAPL", "1.00"))
    await publish(js, "AAPL", "1.50")  # missed by the client, then aged out
    await eventually(lambda: _stream_empty(js), within=10, what="ticks aged out")
    await publish(js, "AAPL", "2.00")
    async with open_stream(gateway.url, {"symbols": "AAPL"}, {"Last-Event-ID": old_id}) as stream:
        reset = await stream.next_event()
        after = await stream.next_event()
    assert (reset.event, reset.json()["reason"]) == ("reset", "position-lost")
    assert after.json()["price"] == 2.0


async def test_position_whose_own_tick_aged_out_resumes_when_nothing_after_it_was_lost(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway(stream_max_age=1.0)
    seen = await event_id(js, await publish(js, "AAPL", "1.00"))
    await eventually(lambda: _stream_empty(js), within=10, what="tick aged out")
    nxt = await publish(js, "AAPL", "2.00")
    async with open_stream(gateway.url, {"symbols": "AAPL"}, {"Last-Event-ID": seen}) as stream:
        event = await stream.next_event()
    assert event.id == await event_id(js, nxt)


async def _stream_empty(js: JetStreamContext) -> bool:
    return (await js.stream_info("PRICES")).state.messages == 0


async def test_symbol_trimmed_by_its_per_subject_limit_gets_reset(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    # No resume window: the catch-up comes from JetStream, which no longer has it all.
    gateway = await start_gateway(stream_max_msgs_per_subject=3, resume_window=0)
    await publish(js, "MSFT", "5.00")  # keeps the stream's first sequence low
    seen = await publish(js, "AAPL", "1.00")
    for i in range(4):  # AAPL keeps only its last 3: the first after `seen` is gone
        await publish(js, "AAPL", f"1.1{i}")
    async with open_stream(
        gateway.url, {"symbols": "AAPL"}, {"Last-Event-ID": await event_id(js, seen)}
    ) as stream:
        reset = await stream.next_event()
    assert reset.json()["reason"] == "position-lost"


async def test_symbol_trimmed_by_its_per_subject_limit_resumes_from_the_window(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    """The gateway's memory still holds what the per-subject limit dropped: the client
    gets every tick it missed, not a reset."""
    gateway = await start_gateway(stream_max_msgs_per_subject=3)
    await publish(js, "MSFT", "5.00")
    seen = await publish(js, "AAPL", "1.00")
    missed = [await publish(js, "AAPL", f"1.1{i}") for i in range(4)]
    await eventually(
        lambda: (live := gateway.hub.feeds.live) is not None and live.position == missed[-1],
        within=5,
        what="the live feed past the missed ticks",
    )
    async with open_stream(
        gateway.url, {"symbols": "AAPL"}, {"Last-Event-ID": await event_id(js, seen)}
    ) as stream:
        events = await stream.events(4)
    assert [e.id for e in events] == [await event_id(js, seq) for seq in missed]


async def test_per_subject_limit_without_loss_resumes_normally(
    start_gateway: StartGateway, js: JetStreamContext
) -> None:
    gateway = await start_gateway(stream_max_msgs_per_subject=3)
    for i in range(4):
        await publish(js, "MSFT", f"5.0{i}")  # MSFT trimmed; AAPL is not
    seen = await publish(js, "AAPL", "1.00")
    nxt = await publish(js, "AAPL", "1.01")
    async with open_stream(
        gateway.url, {"symbols": "AAPL"}, {"Last-Event-ID": await event_id(js, seen)}
    ) as stream:
        event = await stream.next_event()
    assert event.id == await event_id(js, nxt)


async def test_id_of_a_deleted_and_recreated_stream_gets_reset(
    gateway: RunningGateway, js: JetStreamContext
) -> None:
    old_id = await event_id(js, await publish(js, "AAPL", "1.00"))
    created = (await js.stream_info("PRICES")).created
    assert created is not None
    await js.delete_stream("PRICES")
    # A new incarnation needs a later creation time (microseconds): the clock past it.
    await eventually(
        lambda: datetime.now(UTC) > created + timedelta(microseconds=1),
        within=1,
        what="the clock past the stream's creation",
    )
    await ensure_stream(js, StreamSettings())
    first = await publish(js, "AAPL", "3.00")
    assert old_id.endswith(f"-{first}")  # same sequence, different stream: must not resume
    async with open_stream(gateway.url, {"symbols": "AAPL"}, {"Last-Event-ID": old_id}) as stream:
        reset = await stream.next_event()
        after = await stream.next_event()
    assert reset.json()["reason"] == "stream-recreated"
    assert after.id == await event_id(js, first)
    assert after.id != old_id
