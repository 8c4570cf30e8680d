"""`python -m bench.publisher`: publishes ticks to JetStream at a controlled rate.

Each tick's `timestamp` is its publish time, so a receiver's clock minus it is the
publish->receive latency. Publishes are pipelined: a plain NATS publish with a reply
subject per tick, to which JetStream sends the ack, so thousands can be in flight and
every stored tick is reported back as (counter, stream sequence, symbol).
Driven over stdin/stdout, one JSON object per line each way.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import nats
import uvloop
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from contracts.messages import MSG_ID_HEADER, PriceTick, message_id
from contracts.stream import StreamSettings, ensure_stream
from contracts.symbols import subject_for

SOURCE = "bench"
ACK_TIMEOUT = 15.0


def symbol_name(index: int) -> str:
    """The benchmark's symbols: SYM00, SYM01, ..."""
    return f"SYM{index:02d}"


class Publisher:
    def __init__(self, nc: NATS, symbols: int) -> None:
        self.nc = nc
        self.subjects = [subject_for(symbol_name(i)) for i in range(symbols)]
        self.names = [symbol_name(i) for i in range(symbols)]
        self.prefix = nc.new_inbox()
        self.pending: dict[int, int] = {}  # counter -> symbol, until acked
        self.acked: list[tuple[int, int, int]] = []
        self.failed = 0
        self.duplicates = 0
        self.counter = 0
        self.window = 10_000
        self.room = asyncio.Event()
        self.settled = asyncio.Event()

    async def start(self) -> None:
        await self.nc.subscribe(self.prefix + ".*", cb=self.on_ack)

    async def on_ack(self, msg: Msg) -> None:
        counter = int(msg.subject.rsplit(".", 1)[1])
        symbol = self.pending.pop(counter, None)
        if symbol is None:
            return
        answer = json.loads(msg.data)
        if "seq" not in answer:  # an error answer, e.g. no stream
            self.failed += 1
        else:
            self.acked.append((counter, answer["seq"], symbol))
            self.duplicates += bool(answer.get("duplicate"))
        if len(self.pending) < self.window // 2:
            self.room.set()
        if not self.pending:
            self.settled.set()

    async def publish(self, symbol: int) -> None:
        self.counter += 1
        counter = self.counter
        tick = PriceTick(
            symbol=self.names[symbol],
            price=Decimal(f"{100 + counter % 50}.{counter % 100:02d}"),
            timestamp=datetime.now(UTC),
            source=SOURCE,
        )
        self.pending[counter] = symbol
        self.settled.clear()
        await self.nc.publish(
            self.subjects[symbol],
            tick.encode(),
            reply=f"{self.prefix}.{counter}",
            headers={MSG_ID_HEADER: message_id(SOURCE, counter)},
        )

    async def run(
        self, rate: float, seconds: float, count: int, symbols: list[int], window: int
    ) -> dict[str, Any]:
        """Publish at `rate` ticks/s for `seconds` (rate 0: `count` ticks as fast as the
        window of unacked ticks allows), round-robin over `symbols`; then await the acks."""
        self.window = window
        self.acked = []
        self.failed = self.duplicates = 0
        loop = asyncio.get_running_loop()
        started = loop.time()
        sent = 0
        while True:
            elapsed = loop.time() - started
            due = count - sent if not rate else int(elapsed * rate) + 1 - sent
            if (rate and elapsed >= seconds) or (not rate and sent >= count):
                break
            while due > 0 and len(self.pending) < window:
                await self.publish(symbols[sent % len(symbols)])
                sent += 1
                due -= 1
            if len(self.pending) >= window:
                self.room.clear()
                await self.room.wait()
            elif rate:
                await asyncio.sleep(0.002)
        duration = loop.time() - started
        await self.nc.flush()
        try:
            async with asyncio.timeout(ACK_TIMEOUT):
                await self.settled.wait()
        except TimeoutError:
            pass
        unacked = len(self.pending)
        self.pending.clear()
        return {
            "sent": sent,
            "seconds": duration,
            "rate": sent / duration if duration else 0.0,
            "acked_after": loop.time() - started,
            "unacked": unacked,
            "failed": self.failed,
            "duplicates": self.duplicates,
            "ticks": self.acked,
            "time": time.time(),
        }


async def serve(nats_url: str, symbols: int) -> None:
    nc = await nats.connect(nats_url, name="bench-publisher", pending_size=64 * 1024 * 1024)
    await ensure_stream(nc.jetstream(), StreamSettings())
    publisher = Publisher(nc, symbols)
    await publisher.start()
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    out = sys.stdout.buffer
    out.write(b'{"ready": true}\n')
    out.flush()
    while line := await reader.readline():
        request = json.loads(line)
        if request["op"] == "quit":
            break
        answer = await publisher.run(
            rate=request.get("rate", 0.0),
            seconds=request.get("seconds", 0.0),
            count=request.get("count", 0),
            symbols=request.get("symbols") or list(range(symbols)),
            window=request.get("window", 10_000),
        )
        out.write(json.dumps(answer).encode() + b"\n")
        out.flush()
    await nc.drain()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.publisher")
    parser.add_argument("--nats-url", required=True)
    parser.add_argument("--symbols", type=int, default=50)
    args = parser.parse_args()
    gc.disable()  # a collection between a tick's timestamp and its send would add latency
    uvloop.run(serve(args.nats_url, args.symbols))


if __name__ == "__main__":
    main()
