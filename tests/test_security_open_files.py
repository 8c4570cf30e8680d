"""The open-files limit of `python -m gateway`: raised to the hard limit at start, and a
refusal to start (status 2, one line) when the hard limit cannot hold --max-connections
plus a margin; with real processes."""

from __future__ import annotations

import asyncio
import os
import resource
import sys
from pathlib import Path

import pytest

from tests.servers import eventually, free_port

pytestmark = pytest.mark.timeout(60)


async def gateway_with_limits(
    soft: int, hard: int, *args: str, nats_url: str = "nats://127.0.0.1:1"
) -> asyncio.subprocess.Process:
    def limit() -> None:  # in the child, before it runs Python
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))

    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        *args,
        env={**os.environ, "NATS_URL": nats_url},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        preexec_fn=limit,
    )


def open_files_limits(pid: int) -> tuple[int, int]:
    line = next(
        line
        for line in Path(f"/proc/{pid}/limits").read_text().splitlines()
        if line.startswith("Max open files")
    )
    soft, hard = line.split()[3:5]
    return int(soft), int(hard)


async def test_a_hard_limit_below_max_connections_plus_a_margin_refuses_to_start() -> None:
    process = await gateway_with_limits(1024, 2000, "--max-connections", "10000")
    async with asyncio.timeout(20):
        _, err = await process.communicate()
    assert process.returncode == 2, err
    lines = err.decode().strip().splitlines()
    assert len(lines) == 1, lines
    for named in ("open files", "2000", "--max-connections"):
        assert named in lines[0], lines[0]


@pytest.mark.skipif(not Path("/proc/self/limits").exists(), reason="reads /proc/<pid>/limits")
async def test_the_soft_limit_is_raised_to_the_hard_limit(nats_url: str) -> None:
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard < 2000:
        pytest.skip(f"needs a finite hard limit of 2000 or more, not {hard}")
    port = free_port()
    process = await gateway_with_limits(
        1024, hard, "--port", str(port), "--max-connections", "500", nats_url=nats_url
    )
    try:
        await eventually(
            lambda: (
                open_files_limits(process.pid) == (hard, hard) or process.returncode is not None
            ),
            within=15,
            what="the soft limit raised",
        )
        assert open_files_limits(process.pid) == (hard, hard)
    finally:
        if process.returncode is None:
            process.terminate()
        await process.wait()
