"""`python -m bench.naive_gateway`: the benchmark's baseline, a naive SSE gateway.

Starlette on uvicorn, the same SSE format as the gateway, and what a first version would
do: core NATS subscriptions per client (one per symbol it asks for), an unbounded queue,
one write per event. No JetStream consumer, no history, no resume. Event ids carry the
publisher's counter from `Nats-Msg-Id` so the benchmark can check them.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import nats
import uvicorn
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from contracts.messages import MSG_ID_HEADER
from contracts.symbols import normalize_symbol, subject_for

HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def build_app(nats_url: str, heartbeat: float) -> Starlette:
    connection: list[NATS] = []

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        connection.append(await nats.connect(nats_url, name="naive-gateway"))
        try:
            yield
        finally:
            await connection[0].close()

    async def stocks(request: Request) -> Response:
        nc = connection[0]
        symbols = [
            normalize_symbol(s)
            for raw in request.query_params.getlist("symbols")
            for s in raw.split(",")
        ]
        queue: asyncio.Queue[Msg] = asyncio.Queue()

        async def enqueue(msg: Msg) -> None:
            queue.put_nowait(msg)

        subjects = [subject_for(s) for s in symbols] or ["prices.>"]
        subs = [await nc.subscribe(subject, cb=enqueue) for subject in subjects]

        async def events() -> AsyncIterator[bytes]:
            try:
                yield b"retry: 2000\n\n"
                while True:
                    try:
                        async with asyncio.timeout(heartbeat):
                            msg = await queue.get()
                    except TimeoutError:
                        yield b": heartbeat\n\n"
                        continue
                    counter = (msg.headers or {}).get(MSG_ID_HEADER, "").rsplit(":", 1)[-1]
                    event_id = b"n-" + counter.encode()
                    yield (
                        b"id: "
                        + event_id
                        + b'\nevent: stockUpdate\ndata: {"id":"'
                        + event_id
                        + b'",'
                        + msg.data[1:]
                        + b"\n\n"
                    )
            finally:
                # Starlette cancels this generator when the client goes; shield the clean-up.
                with anyio.CancelScope(shield=True):
                    for sub in subs:
                        await sub.unsubscribe()

        return StreamingResponse(events(), media_type="text/event-stream", headers=HEADERS)

    async def healthz(request: Request) -> Response:
        return PlainTextResponse("ok")

    return Starlette(
        routes=[Route("/stocks", stocks), Route("/healthz", healthz), Route("/readyz", healthz)],
        lifespan=lifespan,
    )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.naive_gateway")
    parser.add_argument("--nats-url", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--heartbeat", type=float, default=15.0)
    args = parser.parse_args()
    uvicorn.run(
        build_app(args.nats_url, args.heartbeat),
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
