"""Commands of the project run as real subprocesses."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path

import httpx

from tests.servers import eventually, free_port


class GatewayProcess:
    """`python -m gateway` on a free port."""

    def __init__(self, nats_url: str, *args: str, env: Mapping[str, str] | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.args = ["--port", str(self.port), *args]
        self.env = {**os.environ, "NATS_URL": nats_url, **(env or {})}
        self.process: asyncio.subprocess.Process | None = None
        # A file, not a pipe: nobody reads a pipe here, and a full one would block the gateway.
        self.log = Path(tempfile.mkstemp(prefix="gateway-", suffix=".log")[1])

    async def start(self, within: float = 15) -> None:
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
        try:
            await eventually(self.ready, within=within, what="gateway ready")
        except AssertionError as exc:
            tail = self.log.read_text(errors="replace")[-2000:]
            raise AssertionError(f"{exc}; its log ends with:\n{tail}") from None

    async def ready(self) -> bool:
        try:
            async with httpx.AsyncClient() as client:
                return (await client.get(f"{self.url}/readyz")).status_code == 200
        except httpx.TransportError:
            return False

    async def signal(self, signum: signal.Signals) -> int:
        """Send `signum` and return the exit status."""
        assert self.process is not None
        self.process.send_signal(signum)
        async with asyncio.timeout(30):
            return await self.process.wait()

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        self.log.unlink(missing_ok=True)


async def run_command(
    *args: str, env: Mapping[str, str] | None = None, timeout: float = 30
) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(timeout):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()
