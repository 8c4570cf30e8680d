"""uvicorn's server, with the hub drained first when it shuts down."""

from __future__ import annotations

import socket

import uvicorn

from gateway.hub import Hub


class GatewayServer(uvicorn.Server):
    """On SIGTERM/SIGINT uvicorn stops accepting and waits for open responses to finish;
    SSE responses never finish by themselves, so end them first."""

    def __init__(self, config: uvicorn.Config, hub: Hub) -> None:
        super().__init__(config)
        self.hub = hub

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        self.hub.drain()
        await super().shutdown(sockets)
