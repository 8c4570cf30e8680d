"""The processes of one measured set-up: nats-server, the server under test, the publisher
and the loaders; how they are started, measured (pids, RSS, CPU, GC pauses) and killed.

Each workload gets a fresh set (own JetStream store in a temporary directory, free
ports), so no workload inherits another's consumers, memory or stream contents.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any, Self

from bench.config import ROOT, BenchConfig
from bench.processes import (
    BIN,
    START_TIMEOUT,
    BenchError,
    Controlled,
    CpuMeter,
    Pinning,
    Process,
    free_port,
    http_get,
    rss_bytes,
    wait_until_accepting,
    wait_until_ready,
)
from bench.workers import free_ports, process_tree, wait_exited

GC_PROBE = ROOT / "bench" / "gcprobe"
GC_PAUSE = "bench-gc-pause"
EXIT_TIMEOUT = 10.0  # seconds a killed worker has to be gone before the loaders stop


class Stack:
    """`async with Stack(config, target, pinning)`: everything started, then killed."""

    def __init__(self, config: BenchConfig, target: str, pinning: Pinning) -> None:
        self.config = config
        self.target = target
        self.pinning = pinning
        self.dir = Path(tempfile.mkdtemp(prefix=f"bench-{target}-"))
        self.nats_port = free_port()
        self.nats_url = f"nats://127.0.0.1:{self.nats_port}"
        self.nats_monitor_port = free_port()  # GET /jsz: JetStream API calls, consumers
        self.port = free_port()
        # With --workers, worker i answers /readyz and /metrics on ops_port + i.
        self.ops_port = free_ports(config.workers) if self._workers > 1 else 0
        self.nats = Process(
            "nats-server",
            [
                str(BIN / "nats-server"),
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                str(self.nats_port),
                "-m",
                str(self.nats_monitor_port),
                "-sd",
                str(self.dir / "jetstream"),
            ],
            self.dir / "nats.log",
        )
        self.server = Process(
            target, self._server_argv(self.port), self.dir / f"{target}.log", self._cwd()
        )
        self.publisher = Controlled(
            "publisher",
            [
                sys.executable,
                "-m",
                "bench.publisher",
                "--nats-url",
                self.nats_url,
                "--symbols",
                str(config.symbols),
            ],
            self.dir / "publisher.log",
            ROOT,
        )
        self.loaders = [
            Controlled(
                f"loader-{i}",
                [
                    sys.executable,
                    "-m",
                    "bench.loader",
                    "--port",
                    str(self.port),
                    *(["--source", f"127.0.0.{2 + i}"] if self._workers > 1 else []),
                ],
                self.dir / f"loader-{i}.log",
                ROOT,
            )
            for i in range(config.loaders)
        ]

    def _server_argv(self, port: int, gateway_id: str = "bench") -> list[str]:
        if self.target == "naive":
            return [
                sys.executable,
                "-m",
                "bench.naive_gateway",
                "--nats-url",
                self.nats_url,
                "--port",
                str(port),
                "--heartbeat",
                "15",
            ]
        return [
            sys.executable,
            "-m",
            "gateway",
            "--nats-url",
            self.nats_url,
            "--port",
            str(port),
            "--max-connections",
            "19500",
            "--heartbeat",
            "15",
            "--log-level",
            "warning",
            "--gateway-id",
            gateway_id,
            *self.config.gateway_args,
        ]

    @property
    def _workers(self) -> int:
        return self.config.workers if self.target == "gateway" else 1

    def _server_env(self) -> dict[str, str]:
        env: dict[str, str] = {}
        if self._workers > 1:
            env = {"GATEWAY_WORKERS": str(self._workers), "GATEWAY_OPS_PORT": str(self.ops_port)}
        if not self.config.gc_probe:
            return env
        paths = [str(GC_PROBE), os.environ.get("PYTHONPATH", "")]
        return env | {"PYTHONPATH": os.pathsep.join(p for p in paths if p)}

    def metrics_ports(self) -> list[int]:
        """Where the server's /metrics are: each worker's ops port, or the HTTP port."""
        if self._workers == 1:
            return [self.port]
        return [self.ops_port + i for i in range(self._workers)]

    def server_pids(self) -> list[int]:
        """The server's processes: with --workers, the supervisor and all below it."""
        return process_tree(self.server.pid) if self._workers > 1 else [self.server.pid]

    def gc_pauses(self, server: Process | None = None) -> dict[str, Any]:
        """What bench/gcprobe reported: collections of 5 ms or more in the server (or in
        `server`, another one)."""
        pauses: dict[int, list[float]] = {}
        try:
            with (server or self.server).log.open(errors="replace") as log:
                for line in log:
                    if line.startswith(GC_PAUSE):
                        fields = dict(f.split("=") for f in line.split()[1:])
                        pauses.setdefault(int(fields["gen"]), []).append(float(fields["ms"]))
        except OSError:
            pass
        every = [ms for by_gen in pauses.values() for ms in by_gen]
        return {
            "pauses": len(every),
            "total_s": round(sum(every) / 1000, 3),
            "max_ms": max(every, default=0.0),
            "by_generation": {g: len(p) for g, p in sorted(pauses.items())},
            "max_ms_by_generation": {g: max(p) for g, p in sorted(pauses.items())},
        }

    async def start_another_server(self, name: str, port: int) -> Process:
        """A second server under test on the same NATS (W5), pinned as the first; the
        caller stops it."""
        server = Process(name, self._server_argv(port, name), self.dir / f"{name}.log", self._cwd())
        with self.pinning.for_server():
            await server.start(env=self._server_env())
        self.pinning.apply_to_server(server.pid)
        await wait_until_ready(port, "/readyz", START_TIMEOUT, server)
        return server

    async def jsz(self) -> dict[str, Any]:
        """nats-server's JetStream figures: `api` (total, errors), `consumers`, ..."""
        status, body = await http_get(self.nats_monitor_port, "/jsz")
        if status != 200:
            raise BenchError(f"nats-server /jsz answered {status}")
        answer: dict[str, Any] = json.loads(body)
        return answer

    def _cwd(self) -> Path:
        return ROOT if self.target == "naive" else self.config.gateway_src

    async def __aenter__(self) -> Self:
        try:
            await self.nats.start()
            await wait_until_accepting(self.nats_port, START_TIMEOUT, self.nats)
            with self.pinning.for_server():
                await self.server.start(env=self._server_env())
            self.pinning.apply_to_server(self.server.pid)
            await self.publisher.start()
            await self.publisher.read(START_TIMEOUT)  # connected, stream ensured
            for port in self.metrics_ports():  # with --workers, every worker ready
                await wait_until_ready(port, "/readyz", START_TIMEOUT, self.server)
            for pid in self.server_pids()[1:]:  # threads its workers started meanwhile
                self.pinning.apply_to_server(pid)
            for loader in self.loaders:
                await loader.start()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc is not None and not isinstance(exc, asyncio.CancelledError):
            print(f"--- {self.target} log tail ---\n{self.server.tail()}", file=sys.stderr)
        await self.close()

    async def close(self) -> None:
        # Killed, not drained: tearing 19,000 streams down cleanly would take longer than
        # the workload, and nothing of it is measured. Workers too: they would drain
        # (their supervisor gone) beside the next workload.
        below = self.server_pids()[1:] if self.server.process is not None else []
        await self.server.stop(signal.SIGKILL)
        for pid in below:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        # The server's sockets closed before the loaders close theirs: a loader closing
        # first keeps each of its ports in TIME_WAIT for 60 s, and its next binds skip
        # them. Those of a worker still exiting are that worker's share, and a source
        # port goes to the same worker whatever the server's port (SO_REUSEPORT's hash
        # here), so the next workload's connections from that loader went 2:1 to one
        # worker (W2 at 38,000 over two: 503 at_capacity at its 19,500).
        await wait_exited(below, EXIT_TIMEOUT)
        for process in [*self.loaders, self.publisher]:
            await process.stop(signal.SIGKILL)
        await self.nats.stop(signal.SIGTERM)
        shutil.rmtree(self.dir, ignore_errors=True)

    def meter(self) -> CpuMeter:
        return CpuMeter(
            {
                "server": self.server_pids(),
                "loaders": [loader.pid for loader in self.loaders],
                "publisher": [self.publisher.pid],
                "nats": [self.nats.pid],
            }
        )

    def server_rss(self) -> int:
        """The server's resident memory, summed over its processes."""
        self.server.check_alive()
        return sum(rss_bytes(pid) for pid in self.server_pids())

    def nats_rss(self) -> int:
        return rss_bytes(self.nats.pid)
