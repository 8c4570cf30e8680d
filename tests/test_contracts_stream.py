"""ensure_stream against a real nats-server: idempotent, explicit limits, never loses data."""

from __future__ import annotations

import asyncio

import pytest
from nats.js import JetStreamContext
from nats.js.api import StorageType
from nats.js.errors import APIError

from contracts.errors import StreamConfigError
from contracts.stream import StreamSettings, ensure_stream
from tests.ticks import publish


async def test_creates_the_stream_with_explicit_limits(js: JetStreamContext) -> None:
    config = (await js.stream_info("PRICES")).config
    assert config.subjects == ["prices.>"]
    assert config.max_consumers == 100_000  # not the server default that stops at 1,000
    assert config.duplicate_window == 120.0
    assert config.max_msgs_per_subject == 1_000_000
    assert config.max_age == 24 * 3600.0
    assert config.storage == StorageType.FILE


async def test_is_idempotent_and_keeps_data_when_called_concurrently(js: JetStreamContext) -> None:
    seq = await publish(js, "AAPL")
    created = (await js.stream_info("PRICES")).created
    await asyncio.gather(*(ensure_stream(js, StreamSettings()) for _ in range(5)))
    info = await js.stream_info("PRICES")
    assert info.created == created
    assert info.state.last_seq == seq
    assert info.state.messages == 1


async def test_applies_changed_limits_to_an_existing_stream(js: JetStreamContext) -> None:
    await publish(js, "AAPL")
    await ensure_stream(js, StreamSettings(max_msgs_per_subject=10, max_age=60.0))
    info = await js.stream_info("PRICES")
    assert info.config.max_msgs_per_subject == 10
    assert info.config.duplicate_window == 60.0  # clamped: JetStream refuses a longer window
    assert info.state.messages == 1


async def test_unappliable_change_is_a_config_error_not_data_loss(js: JetStreamContext) -> None:
    await publish(js, "AAPL")
    with pytest.raises(StreamConfigError, match="PRICES"):
        await ensure_stream(js, StreamSettings(subject_prefix="prices", replicas=3))
    assert (await js.stream_info("PRICES")).state.messages == 1


async def test_the_stream_refuses_a_message_bigger_than_its_limit(js: JetStreamContext) -> None:
    assert (await js.stream_info("PRICES")).config.max_msg_size == 64 * 1024
    with pytest.raises(APIError, match="message size exceeds maximum allowed"):
        await js.publish("prices.AAPL", b"{" + b" " * (64 * 1024) + b"}")
    seq = await publish(js, "AAPL")  # and goes on storing ticks
    assert (await js.stream_info("PRICES")).state.last_seq == seq
