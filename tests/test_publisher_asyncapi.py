"""The committed AsyncAPI document is what FastStream generates from the code today."""

from __future__ import annotations

import asyncio
import importlib.util
import sys
from pathlib import Path
from typing import Any

import pytest

from publisher import asyncapi

COMMITTED = Path(asyncapi.__file__).with_name("asyncapi.yaml")
REGENERATE = "python -m publisher.asyncapi"
REPO = COMMITTED.parent.parent


async def run(*args: str) -> None:
    process = await asyncio.create_subprocess_exec(
        *args, cwd=REPO, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE
    )
    async with asyncio.timeout(60):
        _, err = await process.communicate()
    assert process.returncode == 0, err.decode()


async def test_committed_document_is_up_to_date(tmp_path: Path) -> None:
    target = tmp_path / "asyncapi.yaml"
    await run(sys.executable, "-m", "publisher.asyncapi", str(target))
    assert target.read_text() == COMMITTED.read_text(), f"stale: run `{REGENERATE}`"


@pytest.mark.skipif(
    importlib.util.find_spec("typer") is None, reason="FastStream's CLI needs faststream[cli]"
)
async def test_faststream_cli_writes_the_same_document(tmp_path: Path) -> None:
    target = tmp_path / "asyncapi.yaml"
    faststream = Path(sys.executable).with_name("faststream")
    await run(
        str(faststream), "docs", "gen", "publisher.asyncapi:app", "--yaml", "--out", str(target)
    )
    assert target.read_text() == COMMITTED.read_text()


def test_document_describes_the_price_channel_and_the_tick_schema() -> None:
    # The committed text equals this rendering (tested above), so its structure is this.
    document: dict[str, Any] = asyncapi.app.schema.to_specification().to_jsonable()
    assert document["asyncapi"].startswith("3.")
    [channel] = document["channels"].values()
    assert channel["address"] == "prices.{symbol}"
    assert "Nats-Msg-Id" in channel["description"]
    [operation] = document["operations"].values()
    assert operation["action"] == "send"
    tick = document["components"]["schemas"]["PriceTick"]
    assert set(tick["required"]) == {"symbol", "price", "timestamp", "source"}
    assert set(tick["properties"]) == {"symbol", "price", "timestamp", "source"}
    assert tick["properties"]["timestamp"]["format"] == "date-time"
    assert tick["additionalProperties"] is True
    text = COMMITTED.read_text()
    for field in ["PriceTick:", "symbol:", "price:", "timestamp:", "source:"]:
        assert f"    {field}" in text
