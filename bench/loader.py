"""`python -m bench.loader`: one load-generator process holding thousands of SSE clients.

Raw asyncio protocols on uvloop (bench.client). Driven by the benchmark over stdin/stdout,
one JSON object per line each way; see `Loader.handle` for the operations.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import resource
import sys
from typing import Any

import uvloop

from bench.checking import PublishedLog, Tally
from bench.client import Client, Stats
from bench.reconnect import STORM_OPS, Reconnector

CONNECT_TIMEOUT = 30.0


class Connection(Client):
    """A client of this process: when its connection is lost, W5's reconnector (armed) may
    open the same client's next one."""

    def __init__(
        self,
        loader: Loader,
        ident: int,
        request: bytes,
        symbols: frozenset[int],
        target: int,
        conflate: tuple[float, float] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        continues: Connection | None = None,
    ) -> None:
        super().__init__(loader.stats, ident, request, symbols, target, conflate, loop, continues)
        self.loader = loader

    def connection_lost(self, exc: Exception | None) -> None:
        super().connection_lost(exc)
        if self.loader.reconnector is not None:
            self.loader.reconnector.lost(self)

    def successor(self, request: bytes, loop: asyncio.AbstractEventLoop) -> Connection:
        """The same client's next connection (exact clients only): it continues this one's
        history, so one check judges everything the client got across both."""
        symbols = self.check.symbols
        return Connection(self.loader, self.ident, request, symbols, 0, loop=loop, continues=self)


class Loader:
    """The connections of this process and the operations the benchmark asks of them."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        # The address connections come from (None: the kernel's choice): one address has
        # only ~28k ports towards one server port.
        self.source: tuple[str, int] | None = None
        self.stats = Stats()
        self.log = PublishedLog()
        self.connections: dict[int, Connection] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.reconnector: Reconnector | None = None  # W5: armed, lost clients reconnect

    async def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request["op"]
        if op == "open":
            return await self.open(
                request["conns"],
                rate=request.get("rate"),
                concurrency=request.get("concurrency", 100),
                lifetime=request.get("lifetime"),
            )
        if op == "close":
            return {"closed": self.close_connections(request.get("ids"))}
        if op == "mark":
            self.stats.reset(request["min_key"])
            return {}
        if op == "stats":
            return self.report()
        if op == "published":
            self.log.extend((key, symbol) for key, symbol in request["ticks"])
            return {}
        if op == "check":
            return self.check(request.get("final", False)).__dict__
        if op == "conn":
            return self.describe(self.connections[request["id"]], request.get("keys", False))
        if op in STORM_OPS:
            return await self.storm(request)
        if op == "quit":
            raise SystemExit(0)
        raise ValueError(f"unknown op {op!r}")

    async def storm(self, request: dict[str, Any]) -> dict[str, Any]:
        """W5's operations (bench.reconnect): arm, storm (progress), calm."""
        if request["op"] == "arm":
            self.reconnector = Reconnector(self, request)
        if self.reconnector is None:
            raise ValueError("arm first")
        return await self.reconnector.handle(request)

    def close_connections(self, ids: list[int] | None) -> int:
        """Close the connections `ids` (None: all); how many were still open."""
        targets = self.connections.values() if ids is None else map(self.connections.get, ids)
        closed = 0
        for conn in targets:
            if conn is not None and not conn.closed:
                conn.close()
                closed += 1
        return closed

    async def open(
        self,
        specs: list[dict[str, Any]],
        *,
        rate: float | None,
        concurrency: int,
        lifetime: float | None,
    ) -> dict[str, Any]:
        """Open connections as fast as `concurrency` allows, or at `rate` per second
        whatever the answers (open loop); answer once every one has answered or failed."""
        loop = asyncio.get_running_loop()
        limit = asyncio.Semaphore(concurrency)
        started = loop.time()
        outcomes: list[tuple[int, float | None]] = []

        async def one(index: int, spec: dict[str, Any]) -> None:
            if rate:
                delay = started + index / rate - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                status, connect = await self.connect(spec)
            else:
                async with limit:
                    status, connect = await self.connect(spec)
            outcomes.append((status, connect))
            if lifetime is not None and status == 200:
                loop.call_later(lifetime, self.connections[spec["id"]].close)

        async with asyncio.TaskGroup() as tg:
            for index, spec in enumerate(specs):
                tg.create_task(one(index, spec))
        elapsed = loop.time() - started
        statuses: dict[str, int] = {}
        for status, _ in outcomes:
            statuses[str(status)] = statuses.get(str(status), 0) + 1
        return {
            "opened": statuses.get("200", 0),
            "statuses": statuses,
            "connect_s": [c for status, c in outcomes if status == 200 and c is not None],
            "seconds": elapsed,
        }

    async def connect(self, spec: dict[str, Any]) -> tuple[int, float | None]:
        """Connect one client; its status (-1: no answer) and its time to the first body byte."""
        headers = "".join(f"{k}: {v}\r\n" for k, v in spec.get("headers", {}).items())
        request = (
            f"GET {spec['path']} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Accept: text/event-stream\r\n{headers}\r\n"
        ).encode()
        conflate = spec.get("conflate")  # [interval, tolerance] in seconds
        conn = Connection(
            self,
            spec["id"],
            request,
            frozenset(spec.get("symbols", ())),
            spec.get("target", 0),
            (conflate[0], conflate[1]) if conflate else None,
        )
        self.connections[conn.ident] = conn
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await loop.create_connection(
                    lambda: conn, self.host, self.port, local_addr=self.source
                )
                status = await conn.answered
        except (OSError, TimeoutError) as exc:
            conn.error = repr(exc)
            conn.close()
            return -1, None
        return status, conn.first_byte

    def report(self) -> dict[str, Any]:
        conns = self.connections.values()
        errors: dict[str, int] = {}
        for conn in conns:
            if conn.error:
                errors[conn.error] = errors.get(conn.error, 0) + 1
        return {
            "window_events": self.stats.window_events,
            "window_bytes": self.stats.window_bytes,
            "hist": self.stats.hist,
            "max_latency": self.stats.max_latency,
            "open": sum(not c.closed for c in conns),
            "closed_by_server": sum(c.closed_by_server for c in conns),
            "body_ended": sum(c.body_ended for c in conns),
            "heartbeats": sum(c.heartbeats for c in conns),
            "resets": sum(c.resets for c in conns),
            "errors": errors,
        }

    def check(self, final: bool) -> Tally:
        """Advance every connection's check: open connections are due every published key
        of their symbols up to the log's last one, closed ones up to their last event."""
        total = Tally()
        for conn in self.connections.values():
            if conn.decoder.status != 200:
                continue
            conn.check.advance(conn.keys, self.log, conn.times, conn.stamps)
            end = conn.check.last if conn.closed else self.log.last_key
            total.add(conn.check.tally(self.log, end, final=final, closed=conn.closed))
        return total

    def describe(self, conn: Connection, keys: bool) -> dict[str, Any]:
        answer: dict[str, Any] = {
            "events": len(conn.keys),
            "last_id": conn.last_id.decode(),
            "first_byte": conn.first_byte,
            "first_event": conn.first_event,
            "target_reached": conn.target_reached,
            "closed": conn.closed,
            "resets": conn.resets,
            "failure": conn.error,
        }
        if keys:
            answer["keys"] = conn.keys.tolist()
        return answer


async def serve(host: str, port: int, source: str = "") -> None:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=256 * 1024 * 1024)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    loader = Loader(host, port)
    loader.source = (source, 0) if source else None
    out = sys.stdout.buffer
    while line := await reader.readline():
        request = json.loads(line)
        try:
            answer = await loader.handle(request)
        except SystemExit:
            break
        except Exception as exc:  # reported to the benchmark, which raises it
            answer = {"error": repr(exc)}
        out.write(json.dumps(answer).encode() + b"\n")
        out.flush()
    for conn in loader.connections.values():
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.loader")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--source", default="", help="local address to connect from")
    args = parser.parse_args()
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    # A full collection over thousands of connections pauses this loop for tens of ms, which
    # would show up as the server's latency; the few cycles left (closed protocols) can wait.
    gc.disable()
    uvloop.run(serve(args.host, args.port, args.source))


if __name__ == "__main__":
    main()
