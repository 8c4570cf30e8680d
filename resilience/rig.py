"""The processes of a soak or chaos run (bench.processes underneath) and what is sampled.

Gateways and publishers are the project's own commands (`python -m gateway`,
`python -m publisher`), configured as in production; restarting one keeps its port,
name and log. A sample of a gateway reads its RSS and open descriptors from /proc, its
open streams and asyncio tasks from /metrics; JetStream's consumers come from the stream.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from nats.js.client import JetStreamContext

from bench.processes import (
    BIN,
    START_TIMEOUT,
    Process,
    free_port,
    http_get,
    metric,
    rss_bytes,
    wait_until_accepting,
    wait_until_ready,
)
from contracts.stream import StreamSettings

STREAM = StreamSettings().name
SUBJECTS = f"{StreamSettings().subject_prefix}.>"


# A run stopped by SIGTERM exits with its conventional status, once its processes are stopped.
SIGTERM_STATUS = 128 + signal.SIGTERM


def cancel_on_sigterm() -> None:
    """SIGTERM ends the run as Ctrl-C does: the running task is cancelled, and the
    processes it started are stopped on the way out (SIGTERM's default action ends the
    interpreter at once and leaves them running)."""
    task = asyncio.current_task()
    assert task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)


def symbols(count: int) -> list[str]:
    """The run's symbols: S00, S01, ..."""
    return [f"S{i:02d}" for i in range(count)]


class Nats(Process):
    """A single `nats-server -js` (the soak's); the chaos run uses tests.cluster."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"nats://127.0.0.1:{self.port}"
        argv = [str(BIN / "nats-server"), "-js", "-a", "127.0.0.1", "-p", str(self.port)]
        argv += ["-sd", str(directory / "jetstream")]
        super().__init__("nats-server", argv, directory / "nats.log")

    async def start(self, *, piped: bool = False, env: Mapping[str, str] | None = None) -> None:
        await super().start(piped=piped, env=env)
        await wait_until_accepting(self.port, START_TIMEOUT, self)


class Gateway(Process):
    """`python -m gateway` on its own port; `extra` flags come last, so they win."""

    def __init__(self, name: str, nats_url: str, directory: Path, extra: Sequence[str]) -> None:
        self.port = free_port()
        argv = [sys.executable, "-m", "gateway", "--nats-url", nats_url, "--port", str(self.port)]
        argv += ["--gateway-id", name, "--log-level", "warning", *extra]
        super().__init__(name, argv, directory / f"{name}.log")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.returncode is None

    async def start(self, *, piped: bool = False, env: Mapping[str, str] | None = None) -> None:
        await super().start(piped=piped, env=env)
        await wait_until_ready(self.port, "/readyz", START_TIMEOUT, self)

    async def metrics(self) -> bytes:
        status, text = await http_get(self.port, "/metrics")
        return text if status == 200 else b""

    def open_fds(self) -> int:
        return len(os.listdir(f"/proc/{self.pid}/fd"))


class Publisher(Process):
    """`python -m publisher` for some symbols at `rate` ticks/s each."""

    def __init__(
        self, source: str, nats_url: str, names: Sequence[str], rate: float, directory: Path
    ) -> None:
        argv = [sys.executable, "-m", "publisher", "--nats-url", nats_url, "--source", source]
        argv += ["--symbols", ",".join(names), "--rate", str(rate), "--log-level", "warning"]
        super().__init__(source, argv, directory / f"{source}.log")

    async def restart(self, sig: signal.Signals) -> None:
        await self.stop(sig)
        await self.start()


async def sample(gateway: Gateway, js: JetStreamContext) -> dict[str, float]:
    """One sample of the leak-prone resources (a value is absent when not readable)."""
    values: dict[str, float] = {}
    with contextlib.suppress(OSError):
        values["rss_bytes"] = rss_bytes(gateway.pid)
        values["open_fds"] = gateway.open_fds()
    text = await gateway.metrics()
    for name, key in (
        ("gateway_asyncio_tasks", "asyncio_tasks"),
        ("gateway_open_streams", "open_streams"),
    ):
        if (value := metric(text, name)) is not None:
            values[key] = value
    with contextlib.suppress(Exception):
        async with asyncio.timeout(5):
            info = await js.stream_info(STREAM)
        values["js_consumers"] = info.state.consumer_count
    return values


GATEWAY_COUNTERS = (
    "gateway_slow_client_disconnects_total",
    "gateway_live_fallbacks_total",
    "gateway_events_sent_total",
    "gateway_consumer_create_seconds_count",
)


async def counters(gateway: Gateway) -> dict[str, float]:
    """The gateway's counters that say what the run exercised (absent: not readable)."""
    text = await gateway.metrics()
    found = {name: metric(text, name) for name in GATEWAY_COUNTERS}
    return {name.removeprefix("gateway_"): v for name, v in found.items() if v is not None}
