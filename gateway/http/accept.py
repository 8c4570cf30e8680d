"""Accepting connections in bursts, as many as may be incomplete.

libuv (under uvloop, since libuv 1.45) accepts one connection per turn of the event loop.
A turn of a gateway with thousands of streams takes milliseconds, so in a reconnect storm
the kernel's accept queue stayed full (W5: 100-250 accepts/s, the queue at its 4,096):
the handshakes the kernel completed but could not queue were dropped, clients' requests
were sent again after growing delays, and after ~3 s the kernel reset them (the clients'
"closed before answering"). So the gateway accepts on its listening sockets itself: up to
BURST connections for each BURST_PERIOD since it last did, and no more than may still be
sending their headers (gateway.http.limits: past that bound, a newcomer takes the place
of a connection that has sent nothing complete for a second, never of one that has only
just connected; the others wait in the kernel's queue).
"""

from __future__ import annotations

import asyncio
import errno
import functools
import logging
import socket
from collections.abc import Callable, Coroutine
from typing import Any

logger = logging.getLogger(__name__)

# Connections accepted per readiness at most: BURST for each BURST_PERIOD since the last
# look, so a turn stays short while the loop turns quickly, and a storm is still taken in
# when it does not (a turn that reads thousands of requests takes tens of milliseconds,
# and the kernel drops the handshakes its accept queue has no room for).
BURST = 128
BURST_PERIOD = 0.01
ROOM_RETRY = 0.05  # seconds before looking again for room to accept in
# Out of file descriptors (or kernel memory): accepting again at once would only spin.
RETRY_AFTER_FULL = 1.0
RESOURCE_ERRORS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


class Acceptor:
    """Accepts on `sock` (listening, owned from now on) for `protocol_factory` until
    `close()`; `room(now, most)` is how many more connections may be accepted (at most
    `most`), by the bound on those still sending their headers."""

    def __init__(
        self,
        sock: socket.socket,
        protocol_factory: Callable[[], asyncio.Protocol],
        room: Callable[[float, int], int],
    ) -> None:
        self._sock = sock
        self._factory = protocol_factory
        self._room = room
        self._loop = asyncio.get_running_loop()
        self._adopting = 0  # accepted, their protocol's connection_made still to come
        self._looked_at = self._loop.time()  # the last time the socket was accepted on
        self._retry: asyncio.TimerHandle | None = None
        # A connection's family and type are its listening socket's. socket.socket asks
        # the kernel for them and makes an enum of the answer each time they are read
        # (socket.accept twice, uvloop's connect_accepted_socket three times): ~6 µs a
        # connection. Its accepted sockets answer from their class instead.
        known = {"__slots__": (), "family": sock.family, "type": sock.type}
        accepted = type("AcceptedSocket", (socket.socket,), known)
        # A listener made without a protocol says 0; asyncio's own loop then leaves Nagle's
        # algorithm on for its connections (uvloop sets TCP_NODELAY whatever it says).
        tcp = sock.family in (socket.AF_INET, socket.AF_INET6) and sock.type == socket.SOCK_STREAM
        proto = socket.IPPROTO_TCP if tcp else sock.proto
        self._wrap = functools.partial(accepted, sock.family, sock.type, proto)
        sock.setblocking(False)
        self._loop.add_reader(sock.fileno(), self._accept)

    def close(self) -> None:
        """Stop accepting; the connections accepted so far are not affected."""
        if self._retry is not None:
            self._retry.cancel()
        if self._sock.fileno() >= 0:
            self._loop.remove_reader(self._sock.fileno())
            self._sock.close()

    async def wait_closed(self) -> None:
        """As asyncio.Server's: uvicorn awaits it after close()."""

    def _accept(self) -> None:
        now = self._loop.time()
        burst = BURST * max(1, int((now - self._looked_at) / BURST_PERIOD))
        self._looked_at = now
        room = self._room(now, burst + self._adopting) - self._adopting
        if room <= 0:  # they wait in the kernel's queue a moment
            self._wait(ROOM_RETRY)
            return
        for _ in range(room):
            try:
                # What socket.accept does, less its two reads of the listener's family
                # and type (a non-blocking listener: it makes no blocking sockets).
                conn = self._wrap(self._sock._accept()[0])  # type: ignore[attr-defined]
            except (BlockingIOError, InterruptedError):
                return  # none left: the socket is readable again when one comes
            except ConnectionAbortedError:
                continue  # gone before it was accepted
            except OSError as exc:
                if exc.errno not in RESOURCE_ERRORS:
                    raise
                self._pause(exc)
                return
            self._adopt(conn)

    def _adopt(self, conn: socket.socket) -> None:
        """The loop's transport for `conn`, with no task: connect_accepted_socket runs to
        its one await (the transport is made, connection_made scheduled), and on to its
        end once the protocol has it."""
        step = self._loop.connect_accepted_socket(self._factory, conn)
        try:
            made: asyncio.Future[None] = step.send(None)
        except StopIteration:
            return  # made already
        except Exception:
            logger.exception("cannot serve an accepted connection")
            conn.close()
            return
        self._adopting += 1
        made.add_done_callback(functools.partial(self._adopted, step))

    def _adopted(self, step: Coroutine[Any, Any, object], _: asyncio.Future[None]) -> None:
        self._adopting -= 1
        try:
            step.send(None)  # returns: the coroutine ends here
        except StopIteration:
            pass
        except Exception:  # closed before its protocol had it: nothing to serve
            logger.debug("accepted connection lost at once", exc_info=True)

    def _pause(self, exc: OSError) -> None:
        logger.warning(
            "cannot accept connections", extra={"error": str(exc), "retry_in": RETRY_AFTER_FULL}
        )
        self._wait(RETRY_AFTER_FULL)

    def _wait(self, delay: float) -> None:
        """No accepting for `delay` seconds (the socket stays readable meanwhile)."""
        self._loop.remove_reader(self._sock.fileno())
        self._retry = self._loop.call_later(delay, self._resume)

    def _resume(self) -> None:
        self._retry = None
        self._loop.add_reader(self._sock.fileno(), self._accept)
