"""The benchmark's processes: nats-server, the server under test, publisher, loaders.

Also CPU pinning (the server under test alone on one core, everything else on the
others) and what /proc says about a process: CPU seconds and resident memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import signal
import socket
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096
START_TIMEOUT = 30.0


class BenchError(Exception):
    """A process of the benchmark failed or answered an error; the message says which."""


def raise_open_files_limit() -> int:
    """Raise this process's soft open-files limit to the hard one (children inherit it)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass(frozen=True, slots=True)
class Pinning:
    """Which CPUs the server under test gets, and which everything else gets."""

    server: frozenset[int] | None
    others: frozenset[int] | None

    @classmethod
    def plan(cls, enabled: bool, server_cpus: int = 1) -> Pinning:
        """The server on its first `server_cpus` CPUs (one per gateway worker), the rest
        on the others; no pinning when no CPU would be left for the rest."""
        if not enabled or not hasattr(os, "sched_getaffinity"):
            return cls(None, None)
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) <= server_cpus:
            return cls(None, None)
        return cls(frozenset(cpus[:server_cpus]), frozenset(cpus[server_cpus:]))

    @property
    def other_count(self) -> int:
        """CPUs the loaders, publisher and nats-server share."""
        return len(self.others) if self.others else os.cpu_count() or 1

    def describe(self) -> dict[str, Any]:
        return {
            "server_cpus": sorted(self.server) if self.server else None,
            "other_cpus": sorted(self.others) if self.others else None,
        }

    @contextlib.contextmanager
    def for_server(self) -> Iterator[None]:
        """Children started inside this block inherit the server's CPUs."""
        if self.server is None or self.others is None:
            yield
            return
        os.sched_setaffinity(0, self.server)
        try:
            yield
        finally:
            os.sched_setaffinity(0, self.others)

    def apply_to_server(self, pid: int) -> None:
        """Pin every thread of `pid` (threads started before the pin keep their mask)."""
        if self.server is None:
            return
        with contextlib.suppress(OSError):
            for tid in os.listdir(f"/proc/{pid}/task"):
                with contextlib.suppress(OSError):
                    os.sched_setaffinity(int(tid), self.server)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid`, all its threads, from /proc/<pid>/stat."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    fields = stat[stat.rindex(b")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime, stime


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/statm", "rb") as f:
        return int(f.read().split()[1]) * PAGE_SIZE


class CpuMeter:
    """CPU of several processes over a window, as % of one core."""

    def __init__(self, pids: Mapping[str, Sequence[int]]) -> None:
        self.pids = pids
        self.started = time.monotonic()
        self.before = {name: self._cpu(p) for name, p in pids.items()}

    @staticmethod
    def _cpu(pids: Sequence[int]) -> float:
        total = 0.0
        for pid in pids:
            with contextlib.suppress(OSError):
                total += cpu_seconds(pid)
        return total

    def sample(self) -> tuple[float, dict[str, float]]:
        """Wall seconds since the start, and each process's CPU seconds over them."""
        wall = time.monotonic() - self.started
        return wall, {name: self._cpu(p) - self.before[name] for name, p in self.pids.items()}

    def percent(self) -> dict[str, float]:
        wall, used = self.sample()
        return {name: round(100 * seconds / wall, 1) for name, seconds in used.items()}


class Process:
    """A subprocess whose stderr (and stdout unless piped) goes to a log file."""

    def __init__(self, name: str, argv: Sequence[str], log: Path, cwd: Path | None = None) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self.cwd = cwd
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self, *, piped: bool = False, env: Mapping[str, str] | None = None) -> None:
        with self.log.open("ab") as log:
            self.process = await asyncio.create_subprocess_exec(
                *self.argv,
                cwd=self.cwd,
                env={**os.environ, **(env or {})},
                stdin=asyncio.subprocess.PIPE if piped else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE if piped else log,
                stderr=log,
                limit=256 * 1024 * 1024,
            )

    def tail(self, chars: int = 2000) -> str:
        """The end of the log, without bench/gcprobe's lines."""
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        lines = [line for line in text.splitlines(True) if not line.startswith("bench-gc-")]
        return "".join(lines)[-chars:]

    def check_alive(self) -> None:
        if self.process is not None and self.process.returncode is not None:
            raise BenchError(
                f"{self.name} exited with {self.process.returncode}; its log ends:\n{self.tail()}"
            )

    async def stop(self, sig: signal.Signals = signal.SIGKILL) -> None:
        if self.process is None or self.process.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            self.process.send_signal(sig)
        try:
            async with asyncio.timeout(10):
                await self.process.wait()
        except TimeoutError:
            self.process.kill()
            await self.process.wait()


class Controlled(Process):
    """A process driven by one JSON object per line on stdin, answering one per line."""

    _one_at_a_time: asyncio.Lock | None = None

    async def start(self, *, piped: bool = True, env: Mapping[str, str] | None = None) -> None:
        await super().start(piped=True, env=env)

    async def read(self, timeout: float) -> dict[str, Any]:
        assert self.process is not None
        assert self.process.stdout is not None
        try:
            async with asyncio.timeout(timeout):
                line = await self.process.stdout.readline()
        except TimeoutError:
            raise BenchError(f"{self.name} did not answer within {timeout}s") from None
        if not line:
            raise BenchError(f"{self.name} exited; its log ends:\n{self.tail()}")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise BenchError(f"{self.name}: {answer['error']}")
        return answer

    async def request(self, timeout: float = 120.0, **command: Any) -> dict[str, Any]:
        assert self.process is not None
        assert self.process.stdin is not None
        # One request at a time: answers come back in order on one pipe (W5 polls the
        # loaders while the publishing task tells them what was stored).
        if self._one_at_a_time is None:
            self._one_at_a_time = asyncio.Lock()
        async with self._one_at_a_time:
            self.process.stdin.write(json.dumps(command).encode() + b"\n")
            await self.process.stdin.drain()
            return await self.read(timeout)

    async def stop(self, sig: signal.Signals = signal.SIGKILL) -> None:
        if self.process is not None and self.process.stdin is not None:
            with contextlib.suppress(OSError):
                self.process.stdin.close()
        await super().stop(sig)


async def http_get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    """A one-off GET on 127.0.0.1; (status, body), (0, b"") if nothing answers."""
    try:
        async with asyncio.timeout(timeout):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            try:
                writer.write(
                    f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
                )
                response = await reader.read()
            finally:
                writer.close()
    except (OSError, TimeoutError):
        return 0, b""
    head, _, body = response.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1."):
        return 0, b""
    if b"transfer-encoding: chunked" in head.lower():
        body = _dechunk_all(body)
    return int(head[9:12]), body


def _dechunk_all(body: bytes) -> bytes:
    out = []
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line.split(b";")[0] or b"0", 16)
        if not size:
            break
        out.append(rest[:size])
        body = rest[size + 2 :]
    return b"".join(out)


async def wait_until_accepting(port: int, within: float, what: Process) -> None:
    deadline = time.monotonic() + within
    while True:
        what.check_alive()
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                raise BenchError(f"{what.name} not accepting on {port} after {within}s") from None
            await asyncio.sleep(0.05)


async def wait_until_ready(port: int, path: str, within: float, what: Process) -> None:
    deadline = time.monotonic() + within
    while (await http_get(port, path))[0] != 200:
        what.check_alive()
        if time.monotonic() > deadline:
            raise BenchError(f"{what.name}: {path} not 200 after {within}s:\n{what.tail()}")
        await asyncio.sleep(0.1)


def metric(text: bytes, name: str) -> float | None:
    """The value of an unlabelled Prometheus sample in an exposition `text`."""
    for line in text.decode(errors="replace").splitlines():
        if line.startswith((name + " ", name + "{}")):
            return float(line.rsplit(" ", 1)[1])
    return None
