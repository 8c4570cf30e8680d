"""Poison in the stream: anything stored that is not a tick is skipped, counted by reason and
logged, while every client (live or catching up, in both delivery modes) keeps receiving."""

from __future__ import annotations

import json
from collections import Counter

import pytest
from nats.js import JetStreamContext

from tests.conftest import RunningGateway, StartGateway
from tests.scrape import scrape
from tests.sse_client import open_stream
from tests.ticks import event_id, publish

MAX_BYTES = 4096


def nested(depth: int) -> bytes:
    return b'{"symbol":"AAPL","price":1,"timestamp":"t","source":"s","x":' + (
        b"[" * depth + b"]" * depth + b"}"
    )


# (subject, body, reason): what a careless or hostile publisher could store.
POISON = [
    ("prices.AAPL", b"not json\nat all", "malformed"),
    ("prices.AAPL", b"\xff\xfe", "malformed"),
    ("prices.AAPL", b"", "malformed"),
    ("prices.AAPL", b'{"symbol":"AAPL","price":NaN}', "malformed"),
    ("prices.AAPL", b'{"symbol":"AAPL","price":1e400,"timestamp":"t","source":"s"}', "malformed"),
    ("prices.AAPL", b"[1,2,3]", "not_a_tick"),
    ("prices.AAPL", b"null", "not_a_tick"),
    ("prices.AAPL", b'{"symbol":"AAPL"}', "not_a_tick"),
    ("prices.AAPL", b'{"symbol":"AAPL","price":-1,"timestamp":"t","source":"s"}', "not_a_tick"),
    ("prices.AAPL", b'{"symbol":"AAPL","price":"1","timestamp":"t","source":"s"}', "not_a_tick"),
    ("prices.AAPL", b'{"symbol":"AAPL","price":true,"timestamp":"t","source":"s"}', "not_a_tick"),
    ("prices.AAPL", b'{"symbol":"AAPL","price":1,"timestamp":"t","source":"s"}', "not_a_tick"),
    (
        "prices.AAPL",
        b'{"symbol":"AAPL","price":1.0000001,"timestamp":"2026-11-24T10:00:00Z","source":"s"}',
        "not_a_tick",
    ),
    (
        "prices.AAPL",
        b'{"symbol":"MSFT","price":1,"timestamp":"2026-11-24T10:00:00Z","source":"s"}',
        "wrong_subject",
    ),
    # The gateway's own field: a second "id" key would override the event id in JSON.parse.
    (
        "prices.AAPL",
        b'{"symbol":"AAPL","price":1,"timestamp":"t","source":"s","id":"1"}',
        "not_a_tick",
    ),
    ("prices.AAPL", nested(40), "too_deep"),
    ("prices.AAPL", nested(1500), "too_deep"),
    ("prices.AAPL", b'{"symbol":"AAPL","pad":"' + b"x" * MAX_BYTES + b'"}', "oversized"),
]


@pytest.fixture(params=["shared-feed", "own-consumer"])
async def guarded(
    start_gateway: StartGateway, js: JetStreamContext, request: pytest.FixtureRequest
) -> RunningGateway:
    # No resume window: a resume catches up through a consumer of its own, which frames
    # (and checks) every message again, the path these tests are about.
    return await start_gateway(
        shared_feed=request.param == "shared-feed", max_message_bytes=MAX_BYTES, resume_window=0
    )


async def test_poison_is_skipped_counted_and_the_stream_goes_on(
    guarded: RunningGateway, js: JetStreamContext
) -> None:
    before = await publish(js, "AAPL", "1.00")
    async with open_stream(guarded.url, {"symbols": "AAPL"}) as live:
        assert (await live.next_event()).id == await event_id(js, before)
        for subject, body, _ in POISON:
            await js.publish(subject, body)
        after = await publish(js, "AAPL", "2.00")
        # A live client gets the next tick right after the poison, with its own id.
        event = await live.next_event()
        assert event.id == await event_id(js, after)
        assert event.json()["price"] == 2.0
    # A client catching up through its own consumer skips the same poison.
    resume = {"Last-Event-ID": await event_id(js, before)}
    async with open_stream(guarded.url, {"symbols": "AAPL"}, resume) as catching_up:
        event = await catching_up.next_event()
        assert event.id == await event_id(js, after)
        skipped = catching_up.raw.count(b": skipped invalid message ")
        assert skipped == len(POISON)
    samples = await scrape(guarded)
    expected = Counter(reason for _, _, reason in POISON)
    # Counted where framed: once for the live client's path, once for the catch-up.
    for reason, count in expected.items():
        assert samples[f"gateway_messages_skipped_total{{reason={reason}}}"] == 2 * count, reason
    assert samples["gateway_errors_total{kind=invalid_message}"] == 2 * len(POISON)


async def test_a_tick_with_extra_structure_within_the_limits_is_forwarded_as_published(
    guarded: RunningGateway, js: JetStreamContext
) -> None:
    body = json.dumps(
        {
            "symbol": "BRK.B",
            "price": 412.120000,
            "timestamp": "2026-11-25T10:00:00.000001Z",
            "source": "feed-a",
            "venue": {"mic": "XNYS", "book": [[1, 2], [3, 4]]},
        },
        separators=(",", ":"),
    ).encode()
    seq = (await js.publish("prices.BRK_B", body)).seq
    async with open_stream(guarded.url, {"symbols": "BRK.B"}) as stream:
        event = await stream.next_event()
    assert event.id == await event_id(js, seq)
    assert event.data == '{"id":"' + event.id + '",' + body.decode()[1:]
