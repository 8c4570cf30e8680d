"""`make chaos --partitions` in miniature: seed 8's 40 s schedule cuts a NATS node off
from the other two, kills and stops the gateways, kills a NATS node and restarts a
publisher; every client's history, across reconnects between the gateways, is exactly
what the 3-node cluster's R3 stream stored."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHORT = [
    "--partitions",
    "--seed",
    "8",
    "--seconds",
    "40",
    "--steady",
    "15",
    "--resuming",
    "15",
    "--churn",
    "1",
]


async def chaos(*args: str) -> tuple[int, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "resilience.chaos",
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


async def test_the_same_seed_prints_the_same_schedule() -> None:
    first = await chaos(*SHORT, "--plan-only")
    assert first == await chaos(*SHORT, "--plan-only")
    assert first[0] == 0
    other = await chaos("--seed", "2", "--seconds", "40", "--plan-only")
    assert other[1] != first[1]


async def test_every_history_is_exact_through_a_seeded_schedule_of_faults(tmp_path: Path) -> None:
    report_file = tmp_path / "chaos.json"
    status, text = await chaos(*SHORT, "--json", str(report_file))
    assert status == 0, text
    assert "verdict: PASS" in text
    report = json.loads(report_file.read_text())
    assert report["passed"]
    assert report["exact"]
    assert not report["died"]
    faults = "\n".join(report["faults"])
    for kind in ("CUT", "SIGKILL gateway", "SIGTERM gateway", "SIGKILL nats node", "publisher"):
        assert kind in faults
    tally = report["tally"]
    assert tally["received"] > 1000
    assert tally["lost"] == tally["duplicated"] == tally["out_of_order"] == 0
    assert tally["undelivered"] == tally["unexpected"] == 0
    assert report["unjustified_resets"] == 0
