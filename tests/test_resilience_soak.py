"""`make soak` in miniature: a real gateway under churn, resumes, slow readers and publisher
restarts passes (every history exact, nothing trending upward), and the same soak catches a
deliberate leak of descriptors and memory injected into the gateway process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from pathlib import Path

from bench.workers import process_tree, wait_exited
from gateway.metrics import Metrics
from resilience.rig import SIGTERM_STATUS
from resilience.soak import Soak, parse
from tests.servers import eventually

ROOT = Path(__file__).resolve().parent.parent
LEAKY = Path(__file__).resolve().parent / "leaky"
SMOKE = [
    "--seconds", "30",
    "--warmup", "5",
    "--sample-interval", "2",
    "--publisher-restart", "8",
    "--steady", "20",
    "--resuming", "20",
    "--slow", "2",
    "--churn", "2",
]  # fmt: skip
LEAK_RUN = [
    "--seconds", "14",
    "--warmup", "2",
    "--sample-interval", "1",
    "--publisher-restart", "0",
    "--steady", "10",
    "--resuming", "5",
    "--slow", "0",
    "--churn", "1",
]  # fmt: skip
SERIES = {"rss_bytes", "open_fds", "asyncio_tasks", "js_consumers", "open_streams"}


async def test_a_short_soak_passes_with_exact_histories(tmp_path: Path) -> None:
    report_file = tmp_path / "soak.json"
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "resilience.soak",
        *SMOKE,
        "--json",
        str(report_file),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    text = output.decode(errors="replace")
    assert process.returncode == 0, text
    assert "verdict: PASS" in text
    report = json.loads(report_file.read_text())
    assert report["passed"]
    assert report["exact"]
    assert not report["upward"]
    tally = report["tally"]
    assert tally["received"] > 1000
    assert tally["lost"] == tally["duplicated"] == tally["out_of_order"] == 0
    assert tally["undelivered"] == tally["unexpected"] == 0
    assert report["unjustified_resets"] == 0
    assert len(report["restarts"]) >= 2
    assert all(set(sample) >= SERIES | {"t"} for sample in report["samples"])
    assert len(report["samples"]) >= 10
    assert min(sample["asyncio_tasks"] for sample in report["samples"]) > 20


async def test_sigterm_stops_the_run_and_every_process_it_started() -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "resilience.soak",
        *LEAK_RUN,
        "--seconds",
        "120",  # a run that would go on long after the signals below
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        # nats-server, the gateway and the publishers
        await eventually(
            lambda: len(process_tree(process.pid)) >= 4, within=30, what="the run's processes"
        )
        started = process_tree(process.pid)[1:]
        process.send_signal(signal.SIGTERM)
        ending = asyncio.ensure_future(process.communicate())
        try:
            async with asyncio.timeout(15):  # its processes stop within ~10 s
                await asyncio.shield(ending)
        except TimeoutError:
            # A cancellation that lands just as nats-py's asyncio.wait_for gets its reply
            # is lost on Python 3.11 (fixed in 3.12): the run goes on, and a second
            # SIGTERM ends it, as a second Ctrl-C would.
            process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(30):
            output, _ = await ending
        assert process.returncode == SIGTERM_STATUS, output.decode(errors="replace")
        left = [] if await wait_exited(started, timeout=10) else started
        assert not left, f"processes of the run left running: {_command_lines(left)}"
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()


def _command_lines(pids: list[int]) -> list[str]:
    lines = []
    for pid in pids:
        with contextlib.suppress(OSError):
            lines.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode())
    return lines


async def test_a_leak_injected_into_the_gateway_is_reported(tmp_path: Path) -> None:
    args = parse(LEAK_RUN)
    soak = Soak(args, tmp_path)
    paths = [str(LEAKY), os.environ.get("PYTHONPATH", "")]
    soak.gateway_env = {"PYTHONPATH": os.pathsep.join(p for p in paths if p)}
    report = await soak.run()
    assert not report["passed"]
    assert {"rss_bytes", "open_fds"} <= set(report["upward"]), report["lines"]
    assert report["exact"], report["lines"]  # the leak is all that is wrong


async def test_the_asyncio_task_gauge_counts_the_running_loops_tasks() -> None:
    metrics = Metrics()
    wake = asyncio.Event()
    before = _tasks(metrics.render())
    async with asyncio.TaskGroup() as tg:
        for _ in range(5):
            tg.create_task(wake.wait())
        await asyncio.sleep(0)
        during = _tasks(metrics.render())
        wake.set()
    assert during - before == 5


def _tasks(text: bytes) -> float:
    for line in text.decode().splitlines():
        if line.startswith("gateway_asyncio_tasks "):
            return float(line.split()[1])
    raise AssertionError("gateway_asyncio_tasks not exposed")
