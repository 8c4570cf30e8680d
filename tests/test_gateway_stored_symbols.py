"""The stream's info and its stored symbols, against a real nats-server: one function says
why NATS cannot answer, one cache shares the info between the streams that open, and one
lists the symbols for /symbols and for grants."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from contracts.stream import StreamSettings
from gateway.broker.streams import RecentStreamInfo, stream_info
from gateway.broker.symbols import StoredSymbols
from gateway.errors import NatsUnavailableError
from tests.ticks import publish, publish_raw


@dataclass
class Connected:
    nc: NATS | None
    js: JetStreamContext | None


async def test_stream_info_answers_with_the_stream(nc: NATS, js: JetStreamContext) -> None:
    await publish(js, "AAPL")
    info = await stream_info(js, nc, "PRICES", subjects_filter="prices.>")
    assert info.state.subjects == {"prices.AAPL": 1}


async def test_stream_info_is_unavailable_before_a_connection() -> None:
    with pytest.raises(NatsUnavailableError, match=r"^not connected to NATS$"):
        await stream_info(None, None, "PRICES")


async def test_stream_info_is_unavailable_without_the_stream(
    nc: NATS, js: JetStreamContext
) -> None:
    with pytest.raises(NatsUnavailableError, match=r"^stream NOPE not found$"):
        await stream_info(js, nc, "NOPE")


async def test_stream_info_is_unavailable_once_closed(nc: NATS, js: JetStreamContext) -> None:
    await nc.close()
    with pytest.raises(NatsUnavailableError, match=r"^not connected to NATS$"):
        await stream_info(js, nc, "PRICES")


def count_stream_info_calls(js: JetStreamContext, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names JetStream is asked about from now on (the calls still go to the server)."""
    asked: list[str] = []
    real = js.stream_info

    async def counted(name: str, subjects_filter: str | None = None) -> object:
        asked.append(name)
        return await real(name, subjects_filter=subjects_filter)

    monkeypatch.setattr(js, "stream_info", counted)
    return asked


async def test_recent_stream_info_answers_a_crowd_with_one_call(
    nc: NATS, js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An answer older than max_age on arrival (a storm's busy loop): those who waited for
    # it take it rather than asking again one after the other.
    await publish(js, "AAPL")
    asked = count_stream_info_calls(js, monkeypatch)
    recent = RecentStreamInfo("PRICES", max_age=1e-9)
    infos = await asyncio.gather(*(recent.get(js, nc) for _ in range(50)))
    assert asked == ["PRICES"]
    assert {info.state.last_seq for info in infos} == {1}


@pytest.mark.parametrize(
    ("max_stale", "patience", "seen"),
    [
        (0.0, None, [2] * 20),  # past max_stale they all wait for the call
        (60.0, None, [2] + [1] * 19),  # within it, all but the caller that asks
        # Given a task group, the asker waits `patience` at most (a storm's answer can
        # take a second); a quick answer is still its own.
        (60.0, 0.0, [1] * 20),
        (60.0, 5.0, [2] + [1] * 19),
    ],
)
async def test_recent_stream_info_answers_from_the_last_while_asking_within_max_stale(
    nc: NATS,
    js: JetStreamContext,
    monkeypatch: pytest.MonkeyPatch,
    max_stale: float,
    patience: float | None,
    seen: list[int],
) -> None:
    await publish(js, "AAPL")
    asked = count_stream_info_calls(js, monkeypatch)
    recent = RecentStreamInfo("PRICES", 1e-9, max_stale, patience or 0.0)
    async with asyncio.TaskGroup() as tasks:
        if patience is not None:
            recent.ask_in(tasks)
        assert (await recent.get(js, nc)).state.last_seq == 1  # none yet: asked and waited
        await publish(js, "AAPL")
        # The first caller asks again; the others come while its call is in flight.
        infos = await asyncio.gather(*(recent.get(js, nc) for _ in range(20)))
        assert [info.state.last_seq for info in infos] == seen
    assert asked == ["PRICES", "PRICES"]  # one call for all of them, done with the group
    async with asyncio.TaskGroup() as tasks:
        recent.ask_in(tasks)
        assert (await recent.get(js, nc)).state.last_seq == 2  # its answer was kept


async def test_recent_stream_info_asking_behind_keeps_its_error_from_the_task_group(
    nc: NATS, js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    await publish(js, "AAPL")
    recent = RecentStreamInfo("PRICES", max_age=1e-9, max_stale=60.0)
    assert (await recent.get(js, nc)).state.last_seq == 1

    failed: list[str] = []

    async def gone(name: str, subjects_filter: str | None = None) -> object:
        failed.append(name)
        raise NotFoundError

    monkeypatch.setattr(js, "stream_info", gone)
    for calls in (1, 2):  # the failed call is over: the next caller has another asked
        async with asyncio.TaskGroup() as tasks:  # would end with the error if it got there
            recent.ask_in(tasks)
            assert (await recent.get(js, nc)).state.last_seq == 1
        assert failed == ["PRICES"] * calls


async def test_recent_stream_info_gives_its_error_to_every_waiter(
    nc: NATS, js: JetStreamContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    asked = count_stream_info_calls(js, monkeypatch)
    recent = RecentStreamInfo("NOPE", max_age=10)
    answers = await asyncio.gather(*(recent.get(js, nc) for _ in range(20)), return_exceptions=True)
    assert asked == ["NOPE"]
    assert {str(answer) for answer in answers} == {"stream NOPE not found"}
    assert all(isinstance(answer, NatsUnavailableError) for answer in answers)
    with pytest.raises(NatsUnavailableError):  # an error is not kept: the next caller asks
        await recent.get(js, nc)
    assert asked == ["NOPE", "NOPE"]


async def test_stored_symbols_lists_the_symbols_with_a_price(
    nc: NATS, js: JetStreamContext
) -> None:
    for symbol in ("MSFT", "BRK.B", "AAPL", "MSFT"):
        await publish(js, symbol)
    await publish_raw(js, "aapl", b"{}")  # prices.aapl: outside the grammar, not listed
    stored = StoredSymbols(Connected(nc, js), StreamSettings(), ttl=0)
    assert await stored.get() == ["AAPL", "BRK.B", "MSFT"]


async def test_stored_symbols_asks_once_per_ttl(nc: NATS, js: JetStreamContext) -> None:
    await publish(js, "AAPL")
    stored = StoredSymbols(Connected(nc, js), StreamSettings(), ttl=3600)
    assert await stored.get() == ["AAPL"]
    await publish(js, "MSFT")
    assert await stored.get() == ["AAPL"]  # kept
    assert await StoredSymbols(Connected(nc, js), StreamSettings()).get() == ["AAPL", "MSFT"]


async def test_stored_symbols_waits_for_the_connection(nc: NATS, js: JetStreamContext) -> None:
    connection = Connected(None, None)
    stored = StoredSymbols(connection, StreamSettings(), ttl=0)
    with pytest.raises(NatsUnavailableError, match="not connected"):
        await stored.get()
    connection.nc, connection.js = nc, js  # connected later, as the hub is
    assert await stored.get() == []
