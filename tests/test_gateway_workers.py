"""`python -m gateway --workers 2`: two processes on one port, with real processes, real
HTTP and a real nats-server. Streams land on both workers (SO_REUSEPORT), each worker has
its own live feed and its own metrics on --ops-port + i, a resume is exact on either,
SIGTERM drains them all, a killed worker is started again, one that cannot start stops
the supervisor."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from nats.js import JetStreamContext

from bench.workers import free_ports
from tests.processes import GatewayProcess, run_command
from tests.servers import eventually
from tests.sse_client import SSEStream, open_stream
from tests.ticks import publish

pytestmark = pytest.mark.timeout(60)

WORKERS = 2
DRAIN_COMMENT = "stream ended: gateway draining; reconnect to resume"
# Connections opened to see both workers get some: the kernel hashes each connection's
# addresses to a worker, so all of them on one worker has a chance of 2 ** -29.
MAX_TRIES = 30


class Workers(GatewayProcess):
    """`python -m gateway --workers 2`, ready when every worker's /readyz says so."""

    def __init__(self, nats_url: str, *args: str) -> None:
        self.ops_port = free_ports(WORKERS)
        super().__init__(
            nats_url,
            "--workers",
            str(WORKERS),
            "--ops-port",
            str(self.ops_port),
            "--gateway-id",
            "wk",
            "--drain-period",
            "0.5",
            "--heartbeat",
            "1",
            "--inactive-threshold",
            "2",
            *args,
        )

    async def start(self, within: float = 30) -> None:
        await super().start(within)  # three processes start, on a busy machine too

    async def start_unready(self) -> None:
        """Started, without waiting for it to be ready."""
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "gateway",
                *self.args,
                env=self.env,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
            )

    async def wait(self) -> int:
        assert self.process is not None
        return await self.process.wait()

    def ops_url(self, worker: int) -> str:
        return f"http://127.0.0.1:{self.ops_port + worker}"

    async def ready(self) -> bool:
        return all([await self.worker_ready(w) for w in range(WORKERS)])

    async def worker_ready(self, worker: int) -> bool:
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(f"{self.ops_url(worker)}/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    async def open_streams(self, worker: int) -> float:
        """gateway_open_streams of one worker, from its own ops port."""
        async with httpx.AsyncClient() as client:
            response = await client.get(f"{self.ops_url(worker)}/metrics")
        assert response.status_code == 200
        for line in response.text.splitlines():
            if line.startswith("gateway_open_streams "):
                return float(line.split()[1])
        raise AssertionError("no gateway_open_streams sample")

    def log_lines(self) -> list[dict[str, Any]]:
        lines = self.log.read_text(errors="replace").splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def pids(self) -> dict[int, int]:
        """Worker index -> pid of its latest start, from the supervisor's log."""
        return {
            line["worker"]: line["pid"]
            for line in self.log_lines()
            if line["message"] == "worker starting"
        }


@pytest.fixture
async def workers(nats_url: str, js: JetStreamContext) -> AsyncIterator[Workers]:
    process = Workers(nats_url)
    try:
        await process.start()
        yield process
    finally:
        await stop_all(process)


async def stop_all(process: Workers) -> None:
    """The supervisor killed, and its workers too, should a test have failed before a
    clean stop (a worker outliving its supervisor drains, over the drain period)."""
    pids = process.pids()
    await process.stop()
    for pid in pids.values():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


async def streams_on_every_worker(
    workers: Workers,
    stack: contextlib.AsyncExitStack,
    headers: dict[str, str] | None = None,
    *,
    least: int = 1,
) -> list[SSEStream]:
    """Open streams of AAPL until each worker serves at least `least`."""
    streams: list[SSEStream] = []
    for _ in range(MAX_TRIES):
        streams.append(
            await stack.enter_async_context(
                open_stream(workers.url, {"symbols": "AAPL"}, headers=headers)
            )
        )
        await eventually(
            lambda: _counted(workers, len(streams)), within=15, what="every stream counted"
        )
        if all([await workers.open_streams(w) >= least for w in range(WORKERS)]):
            return streams
    raise AssertionError(f"{MAX_TRIES} streams, all on one worker")


async def _counted(workers: Workers, expected: int) -> bool:
    return sum([await workers.open_streams(w) for w in range(WORKERS)]) == expected


async def drain_comment(stream: SSEStream) -> None:
    """Read on (heartbeats included) until the drain's closing comment; fail if the
    stream ends without it, or it does not come within 15 s."""
    async with asyncio.timeout(15):
        block = await stream.next_block()
        while block is not None and DRAIN_COMMENT not in block.comments:
            block = await stream.next_block()
    assert block is not None, "the stream ended without the drain comment"


def _gone(pid: int) -> bool:
    """Exited: no such process, or a zombie nobody reaped yet (an orphan's parent is
    whatever runs as PID 1, which in a container may never reap)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return True
    return stat[stat.rindex(b")") + 2 :].startswith(b"Z")


async def test_streams_land_on_every_worker_each_with_its_live_feed_and_metrics(
    workers: Workers, js: JetStreamContext
) -> None:
    async with contextlib.AsyncExitStack() as stack:
        streams = await streams_on_every_worker(workers, stack)
        sequence = await publish(js, "AAPL", "101.50")
        for stream in streams:
            assert (await stream.next_event()).sequence == sequence
    consumers = [c.name for c in await js.consumers_info("PRICES")]
    for worker in range(WORKERS):
        assert any(name.startswith(f"live-wk-w{worker}-") for name in consumers), consumers
    lines = workers.log_lines()
    assert {line.get("worker") for line in lines if line["logger"] == "gateway"} == {0, 1}


async def test_a_resume_by_last_event_id_is_exact_on_either_worker(
    workers: Workers, js: JetStreamContext
) -> None:
    first = await publish(js, "AAPL", "100.00")
    async with open_stream(workers.url, {"symbols": "AAPL"}) as stream:
        seen = await stream.next_event()
    assert seen.sequence == first
    missed = [await publish(js, "AAPL", f"100.0{i}") for i in range(1, 6)]
    async with contextlib.AsyncExitStack() as stack:
        resumed = await streams_on_every_worker(workers, stack, {"Last-Event-ID": str(seen.id)})
        for stream in resumed:
            got = [event.sequence for event in await stream.events(len(missed))]
            assert got == missed
            await stream.assert_quiet(0.2)


async def test_sigterm_drains_every_worker_and_the_supervisor_exits_0(
    workers: Workers, js: JetStreamContext
) -> None:
    pids = workers.pids()
    async with contextlib.AsyncExitStack() as stack:
        streams = await streams_on_every_worker(workers, stack)
        assert await workers.signal(signal.SIGTERM) == 0
        for stream in streams:
            await drain_comment(stream)
            assert await stream.next_block() is None  # then the body ends
            assert stream.cut is None
    assert all(_gone(pid) for pid in pids.values()), pids
    assert not await js.consumers_info("PRICES")


async def test_a_second_sigterm_ends_every_worker_without_waiting_for_the_drain(
    nats_url: str, js: JetStreamContext
) -> None:
    workers = Workers(nats_url, "--drain-period", "120")  # longer than any wait below
    try:
        await workers.start()
        async with contextlib.AsyncExitStack() as stack:
            # Two streams each: a drain ends the second only half a drain period later.
            await streams_on_every_worker(workers, stack, least=2)
            assert workers.process is not None
            workers.process.send_signal(signal.SIGTERM)
            for worker in range(WORKERS):
                await eventually(
                    functools.partial(_draining, workers, worker), within=10, what="draining"
                )
            async with asyncio.timeout(30):  # well inside the drain period
                assert await workers.signal(signal.SIGTERM) == 0
    finally:
        await stop_all(workers)


async def _draining(workers: Workers, worker: int) -> bool:
    async with httpx.AsyncClient() as client:
        response = await client.get(f"{workers.ops_url(worker)}/readyz")
    return response.status_code == 503 and response.json()["detail"] == "draining"


async def test_a_killed_worker_is_started_again_under_a_new_gateway_id(
    workers: Workers, js: JetStreamContext
) -> None:
    killed = workers.pids()[0]
    async with contextlib.AsyncExitStack() as stack:
        streams = await streams_on_every_worker(workers, stack)
        os.kill(killed, signal.SIGKILL)
        await eventually(
            lambda: workers.pids()[0] != killed, within=10, what="worker 0 started again"
        )
        await eventually(lambda: workers.worker_ready(0), within=15, what="worker 0 ready")
        sequence = await publish(js, "AAPL", "102.00")
        survivors = [s for s in streams if await _delivers(s, sequence)]
        assert 0 < len(survivors) < len(streams)  # worker 1's streams lived on
    assert workers.process is not None
    assert workers.process.returncode is None
    restarted = [line for line in workers.log_lines() if line["message"] == "worker starting"]
    assert restarted[-1]["gateway"] == "wk-w0-r1"


async def test_workers_whose_supervisor_was_killed_drain_and_exit(
    workers: Workers, js: JetStreamContext
) -> None:
    pids = workers.pids()
    async with contextlib.AsyncExitStack() as stack:
        streams = await streams_on_every_worker(workers, stack)
        await workers.signal(signal.SIGKILL)
        for stream in streams:
            await drain_comment(stream)
    await eventually(
        lambda: all(_gone(pid) for pid in pids.values()), within=15, what="workers exited"
    )


async def _delivers(stream: SSEStream, sequence: int) -> bool:
    try:
        return (await stream.next_event()).sequence == sequence
    except AssertionError:  # the stream ended: its worker was killed
        return False


async def test_a_worker_that_cannot_start_stops_the_supervisor_with_its_status(
    nats_url: str,
) -> None:
    process = Workers(nats_url)
    with socket.socket() as taken:  # worker 1's ops port
        taken.bind(("127.0.0.1", process.ops_port + 1))
        taken.listen()
        await process.start_unready()
        try:
            async with asyncio.timeout(30):
                status = await process.wait()
            lines = process.log_lines()
        finally:
            await stop_all(process)
    assert status == 1
    assert any(line["message"].startswith("worker failed") for line in lines)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--workers", "2"], "--workers above 1 needs --ops-port"),
        (["--workers", "2", "--port", "9001", "--ops-port", "9000"], "must be ports other"),
        (["--workers", "0"], "--workers must be 1-64"),
    ],
)
async def test_workers_without_their_ops_ports_exit_2_with_one_line(
    args: list[str], message: str
) -> None:
    status, _, err = await run_command("-m", "gateway", *args)
    assert status == 2
    assert err.count("\n") == 1
    assert message in err
