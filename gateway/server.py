"""uvicorn's server, with the hub drained first when it shuts down."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator
from types import FrameType

import uvicorn

from gateway.hub import Hub


class GatewayServer(uvicorn.Server):
    """On SIGTERM/SIGINT uvicorn stops accepting and waits for open responses to finish;
    SSE responses never finish by themselves, so end them first."""

    def __init__(self, config: uvicorn.Config, hub: Hub) -> None:
        super().__init__(config)
        self.hub = hub

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # Still listening while draining: readiness and new /stocks answer 503 at once.
        draining = asyncio.create_task(self.hub.drain())
        while not draining.done() and not self.force_exit:
            await asyncio.wait({draining}, timeout=0.1)  # uvicorn polls force_exit alike
        if not draining.done():
            draining.cancel()
            self.hub.end_all()
        await super().shutdown(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # A second signal of either kind ends at once (uvicorn only does so for SIGINT).
        if self.should_exit:
            self.force_exit = True
        super().handle_exit(sig, frame)

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        with super().capture_signals():
            yield
            # uvicorn re-raises the signal after a graceful stop, so the process would die
            # of SIGTERM; a completed drain is a success, and Kubernetes expects exit 0.
            self._captured_signals.clear()
