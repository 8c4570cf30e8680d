"""gateway.feed.resume on its own, against a real nats-server: where a client's stream
starts for each position it may bring."""

from __future__ import annotations

import pytest
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy, StreamInfo

from contracts.event_ids import EventPosition, incarnation_of
from contracts.stream import StreamSettings, ensure_stream
from contracts.symbols import subject_for
from gateway.errors import BadRequestError
from gateway.feed.resume import POSITION_LOST, STREAM_RECREATED, Start, resolve_start
from tests.servers import eventually
from tests.ticks import publish

STREAM = "PRICES"


async def info_of(js: JetStreamContext) -> StreamInfo:
    return await js.stream_info(STREAM)


def incarnation(info: StreamInfo) -> str:
    assert info.created is not None
    return incarnation_of(info.created)


def at(info: StreamInfo, sequence: int) -> EventPosition:
    return EventPosition(incarnation(info), sequence)


def subjects(*symbols: str) -> tuple[str, ...]:
    return tuple(subject_for(s) for s in symbols)


async def test_no_position_starts_fresh_from_the_latest_prices(js: JetStreamContext) -> None:
    await publish(js, "AAPL")
    info = await info_of(js)
    start = await resolve_start(js, info, None, subjects("AAPL"))
    assert start == Start(incarnation(info), DeliverPolicy.LAST_PER_SUBJECT, None, None)


@pytest.mark.parametrize("position", [1, 2, 3])
async def test_a_stored_position_resumes_just_after_it(js: JetStreamContext, position: int) -> None:
    for _ in range(3):
        await publish(js, "AAPL")
    info = await info_of(js)
    start = await resolve_start(js, info, at(info, position), None)
    assert start == Start(incarnation(info), DeliverPolicy.BY_START_SEQUENCE, position + 1)


async def test_a_position_past_the_last_sequence_is_refused(js: JetStreamContext) -> None:
    last = await publish(js, "AAPL")
    info = await info_of(js)
    future = at(info, last + 1)
    with pytest.raises(BadRequestError, match=rf"{future}.*last sequence {last}"):
        await resolve_start(js, info, future, None)


async def test_a_position_in_an_earlier_stream_resets_as_stream_recreated(
    js: JetStreamContext,
) -> None:
    await publish(js, "AAPL")
    earlier = at(await info_of(js), 1)
    await js.delete_stream(STREAM)
    await ensure_stream(js, StreamSettings())
    for _ in range(3):
        await publish(js, "AAPL")  # sequence 1 exists again, in the new stream
    info = await info_of(js)
    assert incarnation(info) != earlier.incarnation
    start = await resolve_start(js, info, earlier, None)
    assert (start.deliver_policy, start.sequence) == (DeliverPolicy.LAST_PER_SUBJECT, None)
    assert start.incarnation == incarnation(info)
    assert start.reset is not None
    assert start.reset.reason == STREAM_RECREATED
    assert str(earlier) in start.reset.detail


async def test_a_position_whose_successors_aged_out_resets_as_position_lost(
    js: JetStreamContext,
) -> None:
    await ensure_stream(js, StreamSettings(max_age=1.0))
    for _ in range(3):
        await publish(js, "AAPL")
    await eventually(lambda: _empty(js), within=10, what="the ticks aged out")
    info = await info_of(js)
    lost = await resolve_start(js, info, at(info, 1), None)
    assert lost.reset is not None
    assert lost.reset.reason == POSITION_LOST
    assert (lost.deliver_policy, lost.sequence) == (DeliverPolicy.LAST_PER_SUBJECT, None)
    # The last one sent: nothing after it was lost, whatever aged out before it.
    caught_up = await resolve_start(js, info, at(info, 3), None)
    assert caught_up == Start(incarnation(info), DeliverPolicy.BY_START_SEQUENCE, 4)


async def _empty(js: JetStreamContext) -> bool:
    return (await info_of(js)).state.messages == 0


@pytest.mark.parametrize(("position", "lost"), [(1, True), (2, True), (3, False), (5, False)])
async def test_a_purged_successor_loses_the_position(
    js: JetStreamContext, position: int, lost: bool
) -> None:
    for _ in range(5):
        await publish(js, "AAPL")
    await js.purge_stream(STREAM, seq=4)  # keeps 4 and 5
    info = await info_of(js)
    start = await resolve_start(js, info, at(info, position), None)
    if lost:
        assert start.reset is not None
        assert start.reset.reason == POSITION_LOST
        assert str(at(info, position)) in start.reset.detail
    else:
        assert start == Start(incarnation(info), DeliverPolicy.BY_START_SEQUENCE, position + 1)


# Per-subject limit 2: MSFT 1, AAPL 2 3, TSLA 4, AAPL 5 6. AAPL 5 and 6 push out 2 and 3;
# the stream still starts at 1, so only the per-subject check can see the loss.
PUBLISHED = ("MSFT", "AAPL", "AAPL", "TSLA", "AAPL", "AAPL")
TRIM_CASES = [
    (1, ("AAPL",), True),  # AAPL 2 and 3 are gone
    (2, ("AAPL",), True),  # AAPL 3 is gone
    (4, ("AAPL",), False),  # AAPL 5 and 6 are kept
    (1, ("MSFT",), False),  # MSFT never reached the limit
    (1, ("MSFT", "TSLA"), False),
    (1, ("NVDA",), False),  # nothing stored
    (1, None, True),  # every symbol, AAPL among them
    (5, None, False),
]


@pytest.mark.parametrize(("position", "symbols", "lost"), TRIM_CASES)
async def test_a_successor_trimmed_by_the_per_subject_limit_loses_the_position(
    js: JetStreamContext, position: int, symbols: tuple[str, ...] | None, lost: bool
) -> None:
    await ensure_stream(js, StreamSettings(max_msgs_per_subject=2))
    for symbol in PUBLISHED:
        await publish(js, symbol)
    info = await info_of(js)
    assert (info.state.first_seq, info.state.messages) == (1, 4)
    wanted = None if symbols is None else subjects(*symbols)
    start = await resolve_start(js, info, at(info, position), wanted)
    if lost:
        assert start.reset is not None
        assert start.reset.reason == POSITION_LOST
    else:
        assert start == Start(incarnation(info), DeliverPolicy.BY_START_SEQUENCE, position + 1)
