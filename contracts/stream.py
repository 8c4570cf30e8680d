"""The PRICES stream: its configuration, and an idempotent `ensure_stream`."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
    StreamConsumerLimits,
    StreamInfo,
)
from nats.js.errors import APIError, NotFoundError

from contracts.errors import StreamConfigError
from contracts.messages import MAX_TICK_BYTES
from contracts.symbols import DEFAULT_SUBJECT_PREFIX, all_subjects

logger = logging.getLogger(__name__)

DEFAULT_STREAM = "PRICES"
# JetStream caps consumers per stream at 1,000 unless set explicitly (nats-server 2.15), and every
# SSE client holds one: this is the ceiling across all gateway replicas.
DEFAULT_MAX_CONSUMERS = 100_000
STREAM_NAME_IN_USE = 10058
# The stream refuses what no tick can be (a tick is ~150 bytes; extra fields may add some).
DEFAULT_MAX_MSG_SIZE = MAX_TICK_BYTES


@dataclass(frozen=True, slots=True)
class StreamSettings:
    """What both sides agree on about the stream; every field has a flag in both CLIs.

    The defaults here are the only ones: contracts.settings gives them names and help.
    """

    name: str = DEFAULT_STREAM
    subject_prefix: str = DEFAULT_SUBJECT_PREFIX
    max_age: float = 24 * 3600.0
    max_msgs_per_subject: int = 1_000_000
    max_bytes: int = 1024**3
    duplicate_window: float = 120.0
    max_consumers: int = DEFAULT_MAX_CONSUMERS
    replicas: int = 1
    max_msg_size: int = DEFAULT_MAX_MSG_SIZE
    # Seconds; 0: no limit (a durable consumer may then have no threshold at all).
    consumer_max_inactive: float = 0.0

    @property
    def stored_duplicate_window(self) -> float:
        """The duplicate window the stream gets: JetStream refuses one longer than the
        retention, so a longer setting is cut to it."""
        return min(self.duplicate_window, self.max_age)

    def config(self) -> StreamConfig:
        return StreamConfig(
            name=self.name,
            subjects=[all_subjects(self.subject_prefix)],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            discard=DiscardPolicy.OLD,
            max_age=self.max_age,
            max_msgs_per_subject=self.max_msgs_per_subject,
            max_bytes=self.max_bytes,
            duplicate_window=self.stored_duplicate_window,
            max_consumers=self.max_consumers,
            num_replicas=self.replicas,
            # The broker refuses what no tick needs, before anyone has to skip it.
            max_msg_size=self.max_msg_size,
            # Direct gets let any replica answer "latest price of X" without the leader.
            allow_direct=True,
            # No `Nats-Rollup` header may replace a subject's (or the stream's) history.
            allow_rollup_hdrs=False,
            # Whoever creates a consumer (a gateway's NATS user cannot be trusted with its
            # body): none may stay unused for longer than this, durable or not.
            consumer_limits=(
                StreamConsumerLimits(inactive_threshold=self.consumer_max_inactive)
                if self.consumer_max_inactive
                else None
            ),
        )

    def protected_config(self) -> StreamConfig:
        """config() as the provisioning step applies it (contracts.provision): no message
        deletes or purges through the API, by anyone. JetStream refuses to turn either off
        again, and roll-ups need purges."""
        config = self.config()
        config.deny_delete = True
        config.deny_purge = True
        return config


async def ensure_stream(
    js: JetStreamContext, settings: StreamSettings, *, protect: bool = False
) -> StreamInfo:
    """Create the stream, or bring an existing one to `settings`; never deletes it.

    With `protect`, the stream denies message deletes and purges (protected_config). Without,
    an existing stream keeps the protections it has: they cannot be undone.
    Safe to call from any number of processes at once. Raises StreamConfigError when the
    existing stream cannot take the config (e.g. another storage type).
    """
    config = settings.protected_config() if protect else settings.config()
    try:
        # Creating with an identical config is a no-op that returns the stream.
        return await js.add_stream(config)
    except APIError as exc:
        if exc.err_code != STREAM_NAME_IN_USE:
            raise StreamConfigError(f"stream {settings.name!r} cannot be created: {exc}") from None
    try:
        if not protect:
            existing = (await js.stream_info(settings.name)).config
            config.deny_delete = bool(existing.deny_delete)
            config.deny_purge = bool(existing.deny_purge)
        info = await js.update_stream(config)
    except APIError as exc:
        raise StreamConfigError(f"stream {settings.name!r} cannot be updated: {exc}") from None
    logger.info("stream updated", extra={"stream": settings.name})
    return info


async def wait_for_stream(js: JetStreamContext, name: str, poll: float = 0.5) -> StreamInfo:
    """The stream once it exists, for a program whose NATS user may not create it; the
    caller bounds the wait."""
    while True:
        try:
            return await js.stream_info(name)
        except NotFoundError:
            logger.info("waiting for the stream to be provisioned", extra={"stream": name})
            await asyncio.sleep(poll)
