"""`python -m publisher` as an operator runs it: flags, variables, errors, signals."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import time

import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import StorageType, StreamConfig

from tests.servers import eventually, free_port

PROG = "python -m publisher"
CONTRACT_FLAGS = ["--nats-url", "--source", "--symbols", "--rate"]


async def run_publisher(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> tuple[int, str, str]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "publisher",
        *args,
        env={**os.environ, **(env or {})},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(timeout):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith(f"{PROG}: error:")]


async def test_help_documents_the_contract_flags_with_their_variables() -> None:
    status, out, _ = await run_publisher("--help")
    assert status == 0
    for flag in CONTRACT_FLAGS:
        assert flag in out
    for variable in ["$NATS_URL", "$PUBLISHER_SOURCE", "$PUBLISHER_SYMBOLS", "$PUBLISHER_RATE"]:
        assert variable in out


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["--symbols", "BAD*"], {}, "--symbols: invalid symbol 'BAD*'"),
        (["--symbols", "AAPL,prices.>"], {}, "invalid symbol 'prices.>'"),
        (["--rate", "0"], {}, "--rate must be > 0"),
        ([], {"PUBLISHER_RATE": "-2"}, "--rate must be > 0"),
        ([], {"PUBLISHER_RATE": "fast"}, "$PUBLISHER_RATE: invalid float value"),
        (["--source", "a b"], {}, "--source must be"),
    ],
)
async def test_bad_configuration_exits_2_with_one_error_line(
    args: list[str], env: dict[str, str], message: str
) -> None:
    status, _, err = await run_publisher(*args, env=env)
    assert status == 2
    assert "Traceback" not in err
    # argparse prints its usage above the error; the error itself is one line, the last.
    [line] = error_lines(err)
    assert message in line
    assert err.splitlines()[-1] == line


async def test_unreachable_nats_exits_2_quickly_with_one_line() -> None:
    url = f"nats://127.0.0.1:{free_port()}"  # nothing listens there
    started = time.monotonic()
    status, out, err = await run_publisher(env={"NATS_URL": url}, timeout=20)
    elapsed = time.monotonic() - started

    assert status == 2
    assert err.count("\n") == 1
    assert err.startswith(f"{PROG}: error: cannot connect to NATS at {url} within 5s")
    assert "Traceback" not in err
    assert out == ""
    assert elapsed < 10  # the default --connect-timeout is 5 s


async def test_a_stream_that_cannot_be_reconciled_exits_2_with_one_line(
    nats_url: str, nc: NATS
) -> None:
    # JetStream cannot change a stream's storage type; ensure_stream refuses to delete it.
    await nc.jetstream().add_stream(
        StreamConfig(name="PRICES", subjects=["prices.>"], storage=StorageType.MEMORY)
    )
    status, _, err = await run_publisher(env={"NATS_URL": nats_url})
    assert status == 2
    assert err.count("\n") == 1
    assert err.startswith(f"{PROG}: error: stream 'PRICES' cannot be updated")
    assert "storage type" in err
    assert nats_url in err


async def test_credentials_in_the_url_are_not_shown() -> None:
    url = f"nats://user:s3cret@127.0.0.1:{free_port()}"
    status, _, err = await run_publisher("--nats-url", url, "--connect-timeout", "0.5")
    assert status == 2
    assert "s3cret" not in err
    assert "nats://***@127.0.0.1:" in err  # as the gateway logs it (redact_urls)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
async def test_publishes_into_the_stream_until_a_signal_then_exits_0(
    nats_url: str, js: JetStreamContext, signum: signal.Signals
) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "publisher",
        "--source",
        "cli-1",
        "--symbols",
        "AAPL,brk.b",
        "--rate",
        "20",
        env={**os.environ, "NATS_URL": nats_url},
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    try:

        async def stored_at_least_ten() -> bool:
            return (await js.stream_info("PRICES")).state.messages >= 10

        await eventually(stored_at_least_ten, within=20, what="ticks from the process")
        process.send_signal(signum)
        async with asyncio.timeout(15):
            _, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()

    assert process.returncode == 0
    info = await js.stream_info("PRICES", subjects_filter="prices.>")
    assert set(info.state.subjects or {}) == {"prices.AAPL", "prices.BRK_B"}
    first = await js.get_msg("PRICES", info.state.first_seq)
    assert first.headers is not None
    source, _, counter = first.headers["Nats-Msg-Id"].partition(":")
    assert source == "cli-1"
    assert counter.isdigit()

    records = [json.loads(line) for line in err.decode().splitlines()]  # JSON lines only
    stopped = [r for r in records if r["message"] == "publishing stopped"]
    assert len(stopped) == 1
    assert stopped[0]["published"] >= 10
    assert stopped[0]["failed"] == 0
