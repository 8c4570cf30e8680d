"""gateway.broker.consumer on its own, against a real nats-server: the consumer's life
(created on entry, deleted on every exit) and its pull loop."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import signal
from collections.abc import Iterator

import pytest
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from contracts.symbols import subject_for
from gateway.broker.consumer import PullConsumer
from gateway.broker.deliveries import consumer_sequence, delivery
from gateway.broker.spec import ConsumerSpec
from gateway.errors import NatsUnavailableError, StreamEndedError
from gateway.metrics import Metrics
from tests.servers import NatsServer, eventually
from tests.ticks import publish

STREAM = "PRICES"
_names = itertools.count(1)


def spec(
    *symbols: str,
    policy: DeliverPolicy = DeliverPolicy.ALL,
    start: int | None = None,
    stream: str = STREAM,
) -> ConsumerSpec:
    return ConsumerSpec(
        stream=stream,
        name=f"unit-{next(_names)}",
        filter_subjects=tuple(subject_for(s) for s in symbols or ("AAPL",)),
        deliver_policy=policy,
        start_sequence=start,
        inactive_threshold=5.0,
    )


def consumer(nc: NATS, js: JetStreamContext, which: ConsumerSpec, metrics: Metrics) -> PullConsumer:
    return PullConsumer(nc, js, which, metrics, batch=10, api_timeout=5.0)


async def names(js: JetStreamContext) -> list[str]:
    return [c.name for c in await js.consumers_info(STREAM)]


def open_gauge(metrics: Metrics) -> float | None:
    return metrics.registry.get_sample_value("gateway_consumers_open")


async def read(pull: PullConsumer, count: int) -> list[Msg]:
    """`count` messages, each batch waited for at most 5 s."""
    got: list[Msg] = []
    while len(got) < count:
        batch = await pull.next_batch(5.0)
        assert batch, f"nothing within 5 s after {len(got)} of {count} messages"
        got.extend(batch)
    return got


def sequences(messages: list[Msg]) -> list[int]:
    return [int(delivery(m.reply)[0]) for m in messages]


async def test_the_consumer_exists_inside_the_block_with_its_spec(
    nc: NATS, js: JetStreamContext
) -> None:
    metrics = Metrics()
    which = spec("AAPL", "MSFT", policy=DeliverPolicy.LAST_PER_SUBJECT)
    async with consumer(nc, js, which, metrics):
        info = await js.consumer_info(STREAM, which.name)
        assert open_gauge(metrics) == 1
    assert info.config.filter_subjects == ["prices.AAPL", "prices.MSFT"]
    assert info.config.deliver_policy == DeliverPolicy.LAST_PER_SUBJECT
    assert info.config.mem_storage is True
    assert info.config.inactive_threshold == which.inactive_threshold


async def test_the_consumer_is_deleted_when_the_block_ends(nc: NATS, js: JetStreamContext) -> None:
    metrics = Metrics()
    async with consumer(nc, js, spec(), metrics):
        assert len(await names(js)) == 1
    assert await names(js) == []
    assert open_gauge(metrics) == 0


async def test_the_consumer_is_deleted_when_the_block_raises(
    nc: NATS, js: JetStreamContext
) -> None:
    metrics = Metrics()

    async def failing_client() -> None:
        async with consumer(nc, js, spec(), metrics):
            assert len(await names(js)) == 1
            raise RuntimeError("client failed")

    with pytest.raises(RuntimeError, match="client failed"):
        await failing_client()
    assert await names(js) == []
    assert open_gauge(metrics) == 0


async def test_the_consumer_is_deleted_when_its_task_is_cancelled(
    nc: NATS, js: JetStreamContext
) -> None:
    metrics = Metrics()
    inside = asyncio.Event()

    async def client() -> None:
        async with consumer(nc, js, spec(), metrics) as pull:
            inside.set()
            while True:
                await pull.next_batch(5.0)

    task = asyncio.create_task(client())
    async with asyncio.timeout(10):
        await inside.wait()
    assert len(await names(js)) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await names(js) == []
    assert open_gauge(metrics) == 0


async def test_close_deletes_the_consumer_at_once_and_the_exit_then_does_nothing(
    nc: NATS, js: JetStreamContext
) -> None:
    metrics = Metrics()
    async with consumer(nc, js, spec(), metrics) as pull:
        await pull.close()
        assert await names(js) == []
        assert open_gauge(metrics) == 0
    assert open_gauge(metrics) == 0  # not decremented twice


async def test_a_consumer_that_cannot_be_created_raises_nats_unavailable(
    nc: NATS, js: JetStreamContext
) -> None:
    metrics = Metrics()
    with pytest.raises(NatsUnavailableError, match="could not create a consumer"):
        async with consumer(nc, js, spec(stream="NO_SUCH_STREAM"), metrics):
            pytest.fail("entered the block of a consumer that was not created")
    assert open_gauge(metrics) == 0


async def test_initial_pending_counts_the_stored_messages_it_will_deliver(
    nc: NATS, js: JetStreamContext
) -> None:
    for symbol in ("AAPL", "AAPL", "MSFT", "AAPL", "TSLA"):
        await publish(js, symbol)
    async with consumer(nc, js, spec("AAPL"), Metrics()) as aapl:
        assert aapl.initial_pending == 3
    async with consumer(nc, js, spec("AAPL", "MSFT", "TSLA"), Metrics()) as every:
        assert every.initial_pending == 5
    async with consumer(
        nc, js, spec("AAPL", policy=DeliverPolicy.LAST_PER_SUBJECT), Metrics()
    ) as latest:
        assert latest.initial_pending == 1


async def test_next_batch_delivers_the_stored_messages_in_order_then_live_ones(
    nc: NATS, js: JetStreamContext
) -> None:
    stored = [await publish(js, "AAPL", f"1.0{i}") for i in range(3)]
    await publish(js, "MSFT")  # filtered out
    async with consumer(
        nc, js, spec("AAPL", policy=DeliverPolicy.BY_START_SEQUENCE, start=2), Metrics()
    ) as pull:
        assert sequences(await read(pull, 2)) == stored[1:]
        live = await publish(js, "AAPL", "2.00")
        assert sequences(await read(pull, 1)) == [live]


async def test_next_batch_returns_nothing_when_nothing_comes_in_time(
    nc: NATS, js: JetStreamContext
) -> None:
    await publish(js, "MSFT")
    async with consumer(nc, js, spec("AAPL"), Metrics()) as pull:
        assert await pull.next_batch(0.3) == []
        seq = await publish(js, "AAPL")
        assert sequences(await read(pull, 1)) == [seq]  # still pulling after the timeout


async def test_next_batch_raises_stream_ended_after_stop(nc: NATS, js: JetStreamContext) -> None:
    await publish(js, "AAPL")
    async with consumer(nc, js, spec("AAPL"), Metrics()) as pull:
        pull.stop("draining")
        with pytest.raises(StreamEndedError, match="draining"):
            await pull.next_batch(5.0)
        pull.stop("a later reason")
        with pytest.raises(StreamEndedError, match="draining"):  # the first reason stays
            await pull.next_batch(5.0)


async def test_stop_wakes_a_waiting_next_batch(nc: NATS, js: JetStreamContext) -> None:
    async with consumer(nc, js, spec("AAPL"), Metrics()) as pull:
        waiting = asyncio.create_task(pull.next_batch(30.0))
        await eventually(lambda: _pulled(js, pull), within=5, what="a pull request waiting")
        pull.stop("client gone")
        with pytest.raises(StreamEndedError, match="client gone"):
            async with asyncio.timeout(5):  # well before the 30 s of next_batch
                await waiting


async def _pulled(js: JetStreamContext, pull: PullConsumer) -> bool:
    info = await js.consumer_info(STREAM, pull.spec.name)
    return (info.num_waiting or 0) > 0


async def test_next_batch_raises_stream_ended_when_the_consumer_is_deleted_from_outside(
    nc: NATS, js: JetStreamContext
) -> None:
    metrics = Metrics()
    async with consumer(nc, js, spec("AAPL"), metrics) as pull:
        assert await pull.next_batch(0.1) == []
        await js.delete_consumer(STREAM, pull.spec.name)
        with pytest.raises(StreamEndedError, match=f"consumer {pull.spec.name}"):
            await pull.next_batch(10.0)
    # Leaving the block after that is quiet: the consumer is already gone.
    assert open_gauge(metrics) == 0


@contextlib.contextmanager
def frozen(server: NatsServer) -> Iterator[None]:
    """The server stopped (SIGSTOP): its connections stay open and say nothing, as across
    a partition; it goes on (SIGCONT) on every exit."""
    assert server.process is not None
    server.process.send_signal(signal.SIGSTOP)
    try:
        yield
    finally:
        server.process.send_signal(signal.SIGCONT)


async def test_a_consumer_silent_even_after_asking_again_ends(
    nats_server: NatsServer, nc: NATS, js: JetStreamContext
) -> None:
    async with consumer(nc, js, spec("AAPL"), Metrics()) as pull:
        assert await pull.next_batch(0.1) == []
        with frozen(nats_server), pytest.raises(StreamEndedError, match="no word from"):
            await pull.next_batch(30.0)  # two silences of 3 idle heartbeats: ~4 s


async def test_a_probing_next_batch_asks_jetstream_when_nothing_came(
    nats_server: NatsServer, nc: NATS, js: JetStreamContext
) -> None:
    async with PullConsumer(nc, js, spec("AAPL"), Metrics(), batch=10, api_timeout=1.0) as pull:
        assert await pull.next_batch(0.1, probe=True) == []  # quiet, and JetStream answers
        with frozen(nats_server), pytest.raises(NatsUnavailableError, match="did not answer"):
            await pull.next_batch(0.1, probe=True)


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("$JS.ACK.PRICES.sse-g-1.1.42.1.1700000000000000000.7", (b"42", 7)),
        ("$JS.ACK.PRICES.live-g-1.3.9001.3.1700000000000000000.0", (b"9001", 0)),
        (
            "$JS.ACK.hub.ACCOUNTHASH.PRICES.sse-g-1.1.42.1.1700000000000000000.7.RANDOM",
            (b"42", 7),
        ),
        ("$JS.ACK.hub.ACCOUNTHASH.PRICES.c.2.5.2.1700000000000000000.12.TOKEN", (b"5", 12)),
    ],
)
def test_delivery_reads_sequence_and_pending_from_both_reply_forms(
    reply: str, expected: tuple[bytes, int]
) -> None:
    assert delivery(reply) == expected


async def test_delivery_reads_what_the_server_sends(nc: NATS, js: JetStreamContext) -> None:
    stored = [await publish(js, "AAPL") for _ in range(3)]
    async with consumer(nc, js, spec("AAPL"), Metrics()) as pull:
        messages = await read(pull, 3)
    assert [delivery(m.reply) for m in messages] == [
        (str(seq).encode(), left) for seq, left in zip(stored, (2, 1, 0), strict=True)
    ]


@pytest.mark.parametrize(
    ("reply", "expected"),
    [
        ("$JS.ACK.PRICES.sse-g-1.1.42.17.1700000000000000000.7", 17),
        ("$JS.ACK.hub.ACCOUNTHASH.PRICES.c.2.5.3.1700000000000000000.12.TOKEN", 3),
    ],
)
def test_consumer_sequence_is_read_from_both_reply_forms(reply: str, expected: int) -> None:
    assert consumer_sequence(reply) == expected


async def test_consumer_sequence_counts_deliveries_from_one(nc: NATS, js: JetStreamContext) -> None:
    """What the gap check relies on: a consumer that acknowledges nothing numbers its
    deliveries 1, 2, 3..., whatever stream sequences they carry."""
    await publish(js, "MSFT")
    for _ in range(3):
        await publish(js, "AAPL")
    async with consumer(nc, js, spec("AAPL"), Metrics()) as pull:
        messages = await read(pull, 3)
    assert [consumer_sequence(m.reply) for m in messages] == [1, 2, 3]
