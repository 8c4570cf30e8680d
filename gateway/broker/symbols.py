"""The symbols that have a stored price, read from the stream's subject state, kept briefly.

One cache per process: /symbols lists it, and authorization expands a token's patterns
against it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from contracts.errors import InvalidSymbolError
from contracts.stream import StreamSettings
from contracts.symbols import all_subjects, symbol_for
from gateway.broker.streams import stream_info

# Every tab asks on load and when the picker opens; one stream-info call per second is
# plenty for a list that changes when a new symbol is first published.
SYMBOLS_TTL = 1.0


class Connection(Protocol):
    """Where the NATS connection is once it is made (the hub): None until then."""

    @property
    def nc(self) -> NATS | None: ...

    @property
    def js(self) -> JetStreamContext | None: ...


class StoredSymbols:
    """The stored symbols, fetched at most once per `ttl` seconds."""

    def __init__(
        self, connection: Connection, stream: StreamSettings, ttl: float = SYMBOLS_TTL
    ) -> None:
        self.connection = connection
        self.stream = stream
        self.ttl = ttl
        self._symbols: list[str] = []
        self._fetched_at = -ttl
        # Concurrent requests share one stream-info call instead of each making their own.
        self._lock = asyncio.Lock()

    async def get(self) -> list[str]:
        """The sorted symbols; raises NatsUnavailableError while NATS or the stream is not."""
        async with self._lock:
            if time.monotonic() - self._fetched_at >= self.ttl:
                self._symbols = await self._fetch()
                self._fetched_at = time.monotonic()
            return self._symbols

    async def _fetch(self) -> list[str]:
        prefix = self.stream.subject_prefix
        info = await stream_info(
            self.connection.js,
            self.connection.nc,
            self.stream.name,
            subjects_filter=all_subjects(prefix),
        )
        symbols: set[str] = set()
        for subject in info.state.subjects or {}:
            try:
                symbols.add(symbol_for(subject, prefix))
            except InvalidSymbolError:
                continue  # published by hand outside the symbol grammar: not subscribable
        return sorted(symbols)
